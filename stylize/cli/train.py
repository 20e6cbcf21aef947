"""`stylize train`: a fast network for one painting, on a folder of photos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from stylize.cli.app import EXIT_INTERRUPTED, app, command_context, half_help, panel
from stylize.cli.display import TrainProgress, console, count, err_console
from stylize.config import (DEFAULT_TRAIN_STEPS, Backbone, BackboneConfig, LossConfig, NormKind, TrainConfig,
                            format_layer_weights, parse_layer_weights)

DEFAULT_TRAIN = TrainConfig()
# `stylize train --help` in panels: the run's options first, then the objective and the network.
LOSSES = "The objective (Johnson et al.'s perceptual losses)"
NETWORK = "The network (--shuffle 2 --width 16 --blocks 3: the bundled models')"
_objective_option, _objective_choice = panel(LOSSES)
_network_option, _network_choice = panel(NETWORK)


@app.command()
def train(
    style: Annotated[Path, typer.Argument(help="The painting to learn.", metavar="STYLE", show_default=False)],
    data: Annotated[Path, typer.Option("-d", "--data", help="Folder of training photos (searched recursively).",
                                       show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (.pt).", show_default=False)],
    image_size: Annotated[int, typer.Option(help="Side of the square training crops.")] = DEFAULT_TRAIN.image_size,
    batch_size: Annotated[int, typer.Option(help="Photos per step.")] = DEFAULT_TRAIN.batch_size,
    steps: Annotated[Optional[int], typer.Option(help=f"Training steps \\[default: {DEFAULT_TRAIN_STEPS} unless "
                                                      "--epochs].", show_default=False)] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the photos, instead of --steps.",
                                                    show_default=False)] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate.")] = DEFAULT_TRAIN.learning_rate,
    content_weight: Annotated[float, _objective_option(help="alpha.")] = DEFAULT_TRAIN.loss.content_weight,
    style_weight: Annotated[float, _objective_option(help="beta.")] = DEFAULT_TRAIN.loss.style_weight,
    tv_weight: Annotated[float, _objective_option(help="Total-variation weight.")] = DEFAULT_TRAIN.loss.tv_weight,
    shift_weight: Annotated[float, _objective_option(help="Shift consistency: the output for the crops shifted "
                            "by 1-3 px must be the shifted output (keeps the network from drawing a grid); 0: "
                            "off.")] = DEFAULT_TRAIN.shift_weight,
    content_layers: Annotated[str, _objective_option(help="Content layers, optionally weighted.")] = (
        format_layer_weights(DEFAULT_TRAIN.loss.content_layers)),
    style_layers: Annotated[str, _objective_option(
        help="Style layers with optional weights (normalised to sum 1).")] = (
        format_layer_weights(DEFAULT_TRAIN.loss.style_layers)),
    style_size: Annotated[Optional[int], _objective_option(help="Long side of the style image \\[default: "
                          "--image-size].", show_default=False)] = None,
    backbone: Annotated[Optional[Backbone], _objective_choice(help="Feature network \\[default: vgg16, bundled].",
                                                   show_default=False)] = None,
    weights: Annotated[Optional[Path], _objective_option(help="Local torchvision VGG state dict.",
                                                    show_default=False)] = None,
    norm: Annotated[NormKind, _network_choice(help="Normalisation in the network.")] = NormKind.instance,
    width: Annotated[int, _network_option(help="Channels of the first layer (classic: 32; small preset: 16).")] = 32,
    blocks: Annotated[int, _network_option(help="Residual blocks (classic: 5; small preset: 3).")] = 5,
    shuffle: Annotated[int, _network_option(help="1: Johnson et al.'s layout; 2: every layer at half resolution "
                                         "on 2x2 pixel blocks (the bundled models: width 16, 3 blocks).")] = 1,
    checkpoint_every: Annotated[int, typer.Option(help="Write a resumable checkpoint every N steps.")] = (
        DEFAULT_TRAIN.checkpoint_every),
    resume: Annotated[Optional[Path], typer.Option(help="Continue from a checkpoint (MODEL.ckpt.pt).",
                                                   show_default=False)] = None,
    preview: Annotated[Optional[Path], typer.Option(help="Stylize this image at every checkpoint.",
                                                    show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = DEFAULT_TRAIN.seed,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    workers: Annotated[Optional[int], typer.Option(help="Background data-loading processes \\[default: 0 on "
                       "the CPU, up to 8 on a GPU].", show_default=False)] = DEFAULT_TRAIN.workers,
    half: Annotated[Optional[bool], typer.Option("--half/--no-half", help=half_help(" float16 trains with loss "
                    "scaling."), show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a fast feed-forward network for STYLE on a folder of photos (Johnson et al.)."""
    from stylize import distributed
    from stylize import train as training
    from stylize.device import resolve_device
    from stylize.transformer import CLASSIC, TransformerConfig

    world = distributed.world_from_env()
    say = console.print if world.main else (lambda *a, **k: None)  # under torchrun rank 0 speaks
    with command_context(world, smaller="a smaller --image-size or --batch-size"):
        device = distributed.device_for(device, world)
        if world.distributed:
            distributed.start(resolve_device(device), world)
        quiet = quiet or not world.main
        loss = LossConfig(content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                          content_layers=parse_layer_weights(content_layers, "--content-layers"),
                          style_layers=parse_layer_weights(style_layers, "--style-layers"))
        config = TrainConfig(image_size=image_size, batch_size=batch_size, steps=steps, epochs=epochs,
                             learning_rate=lr, style_size=style_size, checkpoint_every=checkpoint_every, seed=seed,
                             workers=workers, half=half, shift_weight=shift_weight, loss=loss)
        network = TransformerConfig(width=width, blocks=blocks, norm=norm, shuffle=shuffle)
        job = training.prepare_training(style, data, output, config, network,
                                        BackboneConfig(name=backbone, weights=weights, download_progress=not quiet),
                                        device, overwrite, resume, preview, world)
        if job.skipped and world.main:
            err_console.print(f"warning: skipped {count(len(job.skipped), 'unreadable or too large file')} in {data}",
                              markup=False, highlight=False, soft_wrap=True)
        steps_of = (f"{batch_size} x {world.size} processes = {batch_size * world.size} photos"
                    if world.distributed else f"{batch_size}")
        say(f"training on {count(len(job.photos), 'photo')}, {count(job.total_steps, 'step')} of {steps_of}, "
            f"from step {job.start_step}, on {job.device}{' in mixed precision (--half)' if job.config.half else ''}",
            markup=False, highlight=False, soft_wrap=True)
        classic = (width, blocks, shuffle) == (CLASSIC.width, CLASSIC.blocks, CLASSIC.shuffle)
        if classic and job.device.type == "cpu" and job.start_step == 0 and (bundled := _bundled_settings()):
            # The classic defaults suit a GPU; on the development machine's 2-core CPU they trained
            # 1.5 images/s against 11.7 for the bundled models' settings (README, Bundled models).
            say(f"note: on a CPU the bundled models' settings train about 8x faster: {bundled}", markup=False,
                highlight=False, soft_wrap=True)
        with TrainProgress(quiet, job.start_step, job.total_steps) as report:
            result = training.train(job, on_progress=report)
    if result.interrupted:
        if world.main:
            err_console.print(f"interrupted at step {result.steps_done}: checkpoint {result.checkpoint}; resume "
                              f"with the same command plus --resume {result.checkpoint}", markup=False,
                              soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    say(f"saved {result.output} after {count(result.steps_done, 'step')} (checkpoint {result.checkpoint})",
        markup=False, highlight=False, soft_wrap=True)


def _bundled_settings() -> str:
    """The network and size options the bundled models were trained with, as their files record
    them (the README's recipe, which a test ties to the same records); empty without them."""
    from stylize.modelfile import bundled_models, load_model

    files = bundled_models()
    if not files:
        return ""
    model = load_model(files[0])
    net, training = model.network.config, model.meta["training"]
    return (f"--width {net.width} --blocks {net.blocks} --shuffle {net.shuffle} "
            f"--image-size {training['image_size']} --style-size {training['style_size']}")
