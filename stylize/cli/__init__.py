"""The command line: option parsing, messages and exit codes (progress displays: ``display``).

This package is the only part of stylize that prints or exits. Core errors (:class:`StylizeError`)
become a one-line message and exit code 2; Ctrl-C exits with 130 after keeping what was done.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from stylize import __version__
from stylize.cli.display import BatchProgress, ImageProgress, TrainProgress, console, count, err_console
from stylize.config import (AUTO_ITERATIONS, AUTO_SCALES, DEFAULT_TRAIN_STEPS, Backbone, BackboneConfig,
                            ExportFormat, ImageFormat, InitKind, LossConfig, NormKind, OptimizerKind, OutputConfig,
                            Pairing, RunConfig, StyleLossKind, TrainConfig, format_layer_weights, parse_layer_weights,
                            parse_numbers, parse_scales)
from stylize.errors import InputError, StylizeError

EXIT_FAILED_JOBS = 1  # a batch ran, but some of its jobs failed
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_RUN = RunConfig()
DEFAULT_LOSS = LossConfig()
DEFAULT_OUTPUT = OutputConfig()


def _half_help(note: str = "") -> str:
    """--half/--no-half's help, with a command's own note before the default."""
    return (f"Mixed precision: bfloat16 (float16 on GPUs without it) for the convolutions.{note} \\[default: on "
            "where bfloat16 is native, CPUs with AVX512-BF16 or AMX (about 2x faster there); off on GPUs and "
            "other CPUs; `stylize info` shows which]")


class _OneLineErrors(TyperGroup):
    """Report usage errors (bad option values, missing arguments) as one line, exit code 2."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            rv = EXIT_INTERRUPTED
        except Exception as exc:
            # Click's usage errors (typer vendors Click in recent releases, so match by shape).
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `stylize`: the help was shown
                return sys.exit(0) if standalone_mode else 0
            err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
            rv = exc.exit_code
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neural style transfer: stylize a photo with a painting.")


def main() -> None:
    """Console-script entry point."""
    if os.environ.get("WORLD_SIZE", "1").strip() in ("", "1"):
        _defer_stop_signals()
        app()
        return
    # Under torchrun, leave without the interpreter's teardown: Gloo's worker threads outlive
    # destroy_process_group (torch keeps the group referenced), and tearing them down at exit
    # now and then aborted a rank whose work was done ("terminate called without an active
    # exception", SIGABRT: about 1 run in 100 of the two-process tests on a loaded CPU). Every
    # output is written and closed by now; only the streams need flushing.
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_DEFERRED_SIGNALS: set[int] = set()  # Ctrl-C and SIGTERM, from main() until torch has loaded


def _defer_stop_signals() -> None:
    """Ctrl-C and SIGTERM (kill, timeout, a cluster scheduler's or docker's stop) end the process
    at once until torch has loaded (``_arm_stop_signals``): nothing has started then, and a
    KeyboardInterrupt inside torch's import was turned into an abort ('terminate called...',
    SIGABRT) or swallowed, and the run went on. Signals a parent set otherwise (a background job
    ignores SIGINT) are left alone; under torchrun, whose agent stops its workers with SIGTERM,
    this is not called."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL):
            signal.signal(sig, signal.SIG_DFL)
            _DEFERRED_SIGNALS.add(sig)


def _arm_stop_signals() -> None:
    """From now on Ctrl-C and SIGTERM raise KeyboardInterrupt, which every workflow turns into a
    clean stop: a run keeps its best image, training writes its checkpoint, a batch its summary."""
    for sig in _DEFERRED_SIGNALS:
        signal.signal(sig, signal.default_int_handler)
    _DEFERRED_SIGNALS.clear()


@contextmanager
def _command(world: Any = None, smaller: str = "a smaller --size (with a trained --model, --tile 512)"
             ) -> Iterator[None]:
    """A command's core errors as one line and exit code 2 (said once, by rank 0 under torchrun);
    the process group, if any, is left on the way out. ``smaller``: what to try when memory ran out."""
    from stylize import distributed  # imports torch
    from stylize.device import reuse_freed_memory

    _arm_stop_signals()
    reuse_freed_memory()  # 7-20 % faster passes on the CPU, more peak memory; see its docstring
    world = world or distributed.World()
    try:
        yield
    except StylizeError as exc:
        if not world.main:
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:  # outside a workflow's own handling, e.g. while loading: no traceback
        err_console.print("interrupted", markup=False, highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # an allocation that failed despite the up-front checks: one line too
        from stylize.device import is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        if not world.main:
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise _fail(f"out of memory: try {smaller}") from None
    finally:
        distributed.stop(world)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


# ---------------------------------------------------------------------------------------- run

# Options that only one method reads: given to the other, they used to be ignored without a word.
_ITERATIVE_ONLY = ("iterations", "scales", "optimizer", "lr", "init", "init_image", "content_weight", "style_weight",
                   "tv_weight", "content_layers", "style_layers", "style_loss", "style_blend", "style_scale",
                   "save_every", "backbone", "weights", "seed")
_MODEL_ONLY = ("tile", "batch_size")


def _check_method_options(ctx: typer.Context, model: Optional[str]) -> None:
    """Refuse options that the chosen method (--model or the iterative one) would not use."""
    given = [name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    if model is not None and (unused := [flag(n) for n in given if n in _ITERATIVE_ONLY]):
        raise InputError(f"{', '.join(unused)}: not used with --model (a trained network's style is fixed when it "
                         "is trained); leave them out, or give a painting instead of --model")
    if model is None and (unused := [flag(n) for n in given if n in _MODEL_ONLY]):
        raise InputError(f"{', '.join(unused)}: used with --model only (a trained network); leave them out")


@app.command()
def run(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="CONTENT then STYLE images: files, folders or quoted glob "
                      "patterns. With --style or --model every argument is a CONTENT.", metavar="CONTENT [STYLE]...",
                      show_default=False)],
    style_option: Annotated[Optional[list[Path]], typer.Option("--style", "-s", help="A style image, folder or "
                            "pattern (repeatable); then every argument is a CONTENT.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output image or folder. Default: "
                      "CONTENT_x_STYLE.png beside the photo; a batch needs a folder.", show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option(help="Long side of the output in pixels. \\[default: 512; with "
                    "--model: the photo's own size]", show_default=False)] = None,
    iterations: Annotated[Optional[str], typer.Option(help="Iterations per scale: one number for every scale, "
                          f"or a list such as 200,70. Default: {AUTO_ITERATIONS[-2]} at half size, {AUTO_ITERATIONS[-1]} at "
                          "full size.")] = None,
    scales: Annotated[Optional[str], typer.Option(help="Coarse-to-fine schedule: a number of scales, each twice the "
                      "last (1 = single scale), or sizes such as 128,256. "
                      f"Default: {AUTO_SCALES} (half size, then full).")] = None,
    optimizer: Annotated[OptimizerKind, typer.Option(help="Optimiser.")] = DEFAULT_RUN.optimizer,
    lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate.")] = DEFAULT_RUN.learning_rate,
    init: Annotated[InitKind, typer.Option(help="Starting image.")] = DEFAULT_RUN.init,
    init_image: Annotated[Optional[Path], typer.Option(help="Start from this image instead (e.g. the output of "
                          "an interrupted run, to go on from it).", show_default=False)] = None,
    content_weight: Annotated[float, typer.Option(help="alpha: weight of the content loss.")] = DEFAULT_LOSS.content_weight,
    style_weight: Annotated[float, typer.Option(help="beta: weight of the style loss.")] = DEFAULT_LOSS.style_weight,
    tv_weight: Annotated[float, typer.Option(help="Weight of total-variation smoothing.")] = DEFAULT_LOSS.tv_weight,
    content_layers: Annotated[str, typer.Option(help="Content layers, optionally weighted: relu4_2 or "
                              "relu3_2:0.5,relu4_2.")] = format_layer_weights(DEFAULT_LOSS.content_layers),
    style_layers: Annotated[str, typer.Option(help="Style layers with optional weights (normalised to sum 1), "
                            "e.g. relu1_1:2,relu2_1,relu3_1.")] = format_layer_weights(DEFAULT_LOSS.style_layers),
    style_loss: Annotated[StyleLossKind, typer.Option(help="Style statistic: Gram matrices or per-channel "
                          "mean and std.")] = DEFAULT_LOSS.style_loss,
    style_blend: Annotated[Optional[str], typer.Option(help="Blend all the style images into one style with these "
                           "weights, e.g. 0.7,0.3 (without it: one result per style).")] = None,
    style_scale: Annotated[float, typer.Option(help="Size of the style image relative to the output.")] = DEFAULT_RUN.style_scale,
    preserve_color: Annotated[bool, typer.Option("--preserve-color", help="Keep the photo's colours "
                              "(transfer luminance only).")] = False,
    save_every: Annotated[int, typer.Option(help="Save an intermediate image every N iterations.")] = 0,
    backbone: Annotated[Optional[Backbone], typer.Option(help="Feature network. vgg16 is bundled; vgg19 and "
                        "vgg16-imagenet are downloaded by torchvision. \\[default: vgg16]", show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Local torchvision VGG-16/19 state dict (full model or "
                       "features only).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (same inputs, seed and device: same output).")] = DEFAULT_RUN.seed,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A trained model file (stylize train), "
                     "an exported .onnx/.ts file (stylize export) or a bundled model's name (stylize models): "
                     "one forward pass, no STYLE.",
                     show_default=False)] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also search sub-folders of folder "
                         "inputs.")] = False,
    pairs: Annotated[Pairing, typer.Option(help="product: every content with every style; zip: the first with "
                     "the first, ...")] = DEFAULT_OUTPUT.pairs,
    name: Annotated[str, typer.Option(help="Output file names in a batch: {content}, {style}, {dir} (sub-folder "
                    "of a --recursive input), {ext}.")] = DEFAULT_OUTPUT.template,
    image_format: Annotated[Optional[ImageFormat], typer.Option("--format", help="Output format \\[default: from "
                            "-o, else png].", show_default=False)] = None,
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality (1-100).")] = DEFAULT_OUTPUT.quality,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (a batch otherwise "
                         "skips them, so re-running it resumes it).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned jobs and exit.")] = False,
    contact_sheet: Annotated[Optional[Path], typer.Option(help="Also write one image with the inputs and "
                             "results in a grid.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="With --model: photos of the same size per forward "
                          "pass.")] = DEFAULT_OUTPUT.batch_size,
    tile: Annotated[Optional[int], typer.Option(help="With --model: stylise in tiles of this many pixels "
                    "(0: never) \\[default: only when an image would not fit in memory].",
                    show_default=False)] = None,
    half: Annotated[Optional[bool], typer.Option("--half/--no-half", help=_half_help(), show_default=False)] = None,
    max_pixels: Annotated[int, typer.Option(help="Refuse images with more pixels than this (decompression "
                          "bombs).")] = DEFAULT_OUTPUT.max_pixels,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Stylize photos with paintings (Gatys et al.'s iterative method) or with a trained --model.

    One photo and one style write one image; folders, patterns or several images make a batch."""
    from stylize import distributed

    world = distributed.world_from_env()
    with _command(world):
        _check_method_options(ctx, model)
        device = distributed.device_for(device, world)
        quiet = quiet or not world.main  # under torchrun only rank 0 shows progress
        out_cfg = OutputConfig(template=name, format=image_format, quality=quality, pairs=pairs,
                               recursive=recursive, overwrite=overwrite, max_pixels=max_pixels,
                               batch_size=batch_size, tile=tile)
        blend = parse_numbers(style_blend, "--style-blend") if style_blend else None
        jobs, single = _plan(inputs, style_option, model, blend, output, out_cfg)
        if dry_run:
            if world.main:
                _print_plan(jobs, overwrite)
            return
        if world.distributed:
            if single and not world.main:
                return  # one image: rank 0 makes it
            from stylize.device import resolve_device
            distributed.start(resolve_device(device), world)
        if contact_sheet is not None:
            from stylize.imageio import check_output
            check_output(contact_sheet, overwrite)
        if model is None:
            loss = LossConfig(
                content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                content_layers=parse_layer_weights(content_layers, "--content-layers"),
                style_layers=parse_layer_weights(style_layers, "--style-layers"), style_loss=style_loss)
            config = RunConfig(
                size=DEFAULT_RUN.size if size is None else size, scales=parse_scales(scales) if scales else None,
                iterations=parse_numbers(iterations, "--iterations", int) if iterations else None,
                optimizer=optimizer, learning_rate=lr, init=init, seed=seed, style_scale=style_scale,
                style_blend=blend, preserve_color=preserve_color, save_every=save_every, half=half, loss=loss)
            backbone_cfg = BackboneConfig(name=backbone, weights=weights, download_progress=not quiet)
            if single:
                _single_iterative(jobs[0], config, backbone_cfg, device, out_cfg, quiet, init_image)
            elif init_image is not None:
                raise InputError("--init-image is for a single photo, not a batch")
            elif save_every:  # a batch ran without them, silently
                raise InputError("--save-every is for a single photo, not a batch")
            else:
                from stylize.job import Iterative
                _batch(jobs, Iterative(config, backbone_cfg, device), out_cfg, quiet, contact_sheet, world)
        else:
            from stylize.job import Fast
            stylizer = Fast(model, device, size, preserve_color, tile, half)
            if single:
                _single_fast(jobs[0], stylizer, out_cfg)
            else:
                _batch(jobs, stylizer, out_cfg, quiet, contact_sheet, world)
        if single and contact_sheet is not None:
            from stylize.batchrun import Summary
            _write_sheet(jobs, Summary(), contact_sheet, overwrite)


def _plan(inputs: list[Path], style_option: Optional[list[Path]], model: Optional[str],
          blend: Optional[tuple[float, ...]], output: Optional[Path], out: OutputConfig) -> tuple[list[Any], bool]:
    """The jobs (content, styles, output path) and whether this is a single run (one photo file,
    one style) rather than a batch."""
    from stylize import batch as planning

    content_specs, style_specs = _split_inputs(inputs, style_option, model)
    contents = planning.expand(content_specs, out.recursive, "content")
    styles = planning.expand(style_specs, out.recursive, "style") if style_specs else []
    if blend is not None and len(blend) != len(styles):
        raise InputError(f"--style-blend has {len(blend)} weights for {len(styles)} style image(s)")
    groups = [tuple(s.path for s in styles)] if blend or model else [(s.path,) for s in styles]
    single = len(contents) == 1 and len(groups) == 1 and contents[0].explicit and all(s.explicit for s in styles)
    folder, file = planning.output_folder(output, batch=not single)
    contents = planning.without_outputs(contents, folder)
    if not contents:
        raise InputError("every content image is inside the output folder; give -o another folder")
    model_name = _model_name(model) if model else None
    pairs = planning.pair(contents, groups, out.pairs)
    return planning.plan(pairs, folder, out.template, _extension(out.format, file), model_name, file), single


def _split_inputs(inputs: list[Path], style_option: Optional[list[Path]], model: Optional[str]
                  ) -> tuple[list[Path], list[Path]]:
    """(content specs, style specs): with --style or --model every argument is a content."""
    if model is not None:
        if style_option:
            raise InputError("--model stylizes with a trained network: give no --style with it")
        return list(inputs), []
    if style_option:
        return list(inputs), list(style_option)
    if len(inputs) < 2:
        raise InputError("give at least one style image (stylize run PHOTO PAINTING), --style or a --model")
    return [inputs[0]], list(inputs[1:])


def _extension(image_format: Optional[ImageFormat], file: Optional[Path]) -> str:
    if file is None:
        return (image_format or ImageFormat.png).value
    suffix = file.suffix.lower().lstrip(".")
    if image_format is not None and suffix not in (image_format.value, {"jpg": "jpeg", "tiff": "tif"}.get(
            image_format.value)):
        raise InputError(f"-o {file} and --format {image_format.value} disagree; give one of them")
    return suffix


def _model_name(model: str) -> str:
    from stylize.modelfile import resolve_model

    return resolve_model(model).stem


def _single_iterative(planned: Any, config: RunConfig, backbone: BackboneConfig, device: str, out: OutputConfig,
                      quiet: bool, init_image: Optional[Path]) -> None:
    from stylize import job as jobs

    job = jobs.prepare(planned.content.path, list(planned.styles), planned.output, config, backbone, device,
                       out.overwrite, out.quality, out.max_pixels, init_image)
    with ImageProgress(quiet) as report:
        result = jobs.execute(job, on_progress=report)
    if result.interrupted:
        err_console.print(f"interrupted: kept the best image so far in {job.output}; go on from it with the same "
                          f"command plus --init-image {job.output} --overwrite (and --scales 1 to stay at full "
                          "size)", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    h, w = result.image.shape[-2:]
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    console.print(f"saved {job.output} ({w}x{h}) in {result.seconds:.1f} s; loss: {losses}", markup=False,
                  highlight=False, soft_wrap=True)


def _single_fast(planned: Any, stylizer: Any, out: OutputConfig) -> None:
    from stylize import job as jobs

    job = jobs.prepare_fast(planned.content.path, stylizer, planned.output, out.overwrite, out.quality,
                            out.max_pixels)
    result = jobs.execute_fast(job)
    h, w = result.image.shape[-2:]
    console.print(f"saved {job.output} ({w}x{h}) in {result.seconds:.2f} s with {stylizer.path.name}",
                  markup=False, highlight=False, soft_wrap=True)


def _print_plan(jobs: list[Any], overwrite: bool) -> None:
    table = Table(title=count(len(jobs), 'planned job'), title_justify="left")
    for column in ("content", "style", "output", "action"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        action = ("overwrite" if overwrite else "skip (exists)") if job.exists else "stylize"
        table.add_row(*(Text(cell) for cell in (str(job.content.path), job.style_label, str(job.output), action)))
    console.print(table)


def _batch(jobs: list[Any], stylizer: Any, out: OutputConfig, quiet: bool, contact_sheet: Optional[Path],
           world: Any) -> None:
    from stylize import batchrun
    from stylize.job import Iterative

    todo = sum(1 for j in jobs if not j.exists or out.overwrite)
    if world.main:
        shared = f", shared by {world.size} processes" if world.distributed else ""
        console.print(f"{count(len(jobs), 'job')}: {todo} to do{shared}, {len(jobs) - todo} done already",
                      markup=False, highlight=False, soft_wrap=True)
    per_image = isinstance(stylizer, Iterative)
    with BatchProgress(quiet, -(-todo // world.size), per_image) as (on_job, on_progress):
        summary = batchrun.run_batch(jobs, stylizer, out, world, on_job, on_progress)
    if world.main:
        _print_summary(summary, len(jobs))
        if contact_sheet is not None:
            _write_sheet(jobs, summary, contact_sheet, out.overwrite)
    if summary.interrupted:
        if world.main:
            err_console.print("interrupted: finished outputs are kept; run the same command again to do the rest",
                              markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED_JOBS)


def _print_summary(summary: Any, total: int) -> None:
    from stylize.batchrun import Status

    table = Table(title="batch summary", title_justify="left", show_header=False)
    table.add_column("status")
    table.add_column("count", justify="right")
    for status in Status:
        table.add_row(status.value, str(summary.count(status)))
    untried = total - len(summary.outcomes)
    if untried:
        table.add_row("not started", str(untried))
    console.print(table)
    for outcome in summary.failed:
        reason = outcome.reason.removeprefix(f"{outcome.job.content.path}: ")
        console.print(f"failed: {outcome.job.content.path} x {outcome.job.style_label}: {reason}",
                      markup=False, highlight=False, soft_wrap=True)


def _write_sheet(jobs: list[Any], summary: Any, path: Path, overwrite: bool) -> None:
    from stylize.batchrun import write_contact_sheet

    write_contact_sheet(jobs, summary, path, overwrite)
    console.print(f"contact sheet: {path}", markup=False, highlight=False, soft_wrap=True)


# -------------------------------------------------------------------------------------- train

DEFAULT_TRAIN = TrainConfig()


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
    content_weight: Annotated[float, typer.Option(help="alpha.")] = DEFAULT_TRAIN.loss.content_weight,
    style_weight: Annotated[float, typer.Option(help="beta.")] = DEFAULT_TRAIN.loss.style_weight,
    tv_weight: Annotated[float, typer.Option(help="Total-variation weight.")] = DEFAULT_TRAIN.loss.tv_weight,
    content_layers: Annotated[str, typer.Option(help="Content layers, optionally weighted.")] = (
        format_layer_weights(DEFAULT_TRAIN.loss.content_layers)),
    style_layers: Annotated[str, typer.Option(help="Style layers with optional weights (normalised to sum 1).")] = (
        format_layer_weights(DEFAULT_TRAIN.loss.style_layers)),
    style_size: Annotated[Optional[int], typer.Option(help="Long side of the style image \\[default: "
                          "--image-size].", show_default=False)] = None,
    backbone: Annotated[Optional[Backbone], typer.Option(help="Feature network \\[default: vgg16, bundled].",
                                                         show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Local torchvision VGG state dict.",
                                                    show_default=False)] = None,
    norm: Annotated[NormKind, typer.Option(help="Normalisation in the network.")] = NormKind.instance,
    width: Annotated[int, typer.Option(help="Channels of the first layer (classic: 32; small preset: 16).")] = 32,
    blocks: Annotated[int, typer.Option(help="Residual blocks (classic: 5; small preset: 3).")] = 5,
    shuffle: Annotated[int, typer.Option(help="1: Johnson et al.'s layout; 2: every layer at half resolution "
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
    half: Annotated[Optional[bool], typer.Option("--half/--no-half", help=_half_help(" float16 trains with loss "
                    "scaling."), show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a fast feed-forward network for STYLE on a folder of photos (Johnson et al.)."""
    from stylize import distributed
    from stylize import train as training
    from stylize.device import resolve_device
    from stylize.transformer import TransformerConfig

    world = distributed.world_from_env()
    say = console.print if world.main else (lambda *a, **k: None)  # under torchrun rank 0 speaks
    with _command(world, smaller="a smaller --image-size or --batch-size"):
        device = distributed.device_for(device, world)
        if world.distributed:
            distributed.start(resolve_device(device), world)
        quiet = quiet or not world.main
        loss = LossConfig(content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                          content_layers=parse_layer_weights(content_layers, "--content-layers"),
                          style_layers=parse_layer_weights(style_layers, "--style-layers"))
        config = TrainConfig(image_size=image_size, batch_size=batch_size, steps=steps, epochs=epochs,
                             learning_rate=lr, style_size=style_size, checkpoint_every=checkpoint_every, seed=seed,
                             workers=workers, half=half, loss=loss)
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


# ------------------------------------------------------------------------------------- models

@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the bundled models (name, style, size, how trained)."""
    from stylize.modelfile import bundled_models, load_model

    rows = []
    for path in bundled_models():
        loaded = load_model(path)
        meta, net = loaded.meta, loaded.network.config
        training = meta.get("training", {})
        rows.append({"name": path.stem, "style": meta.get("style_name", "?"), "mb": round(path.stat().st_size / 1e6, 1),
                     "network": f"{net.width}-{2 * net.width}-{4 * net.width}, {net.blocks} blocks, {net.norm.value}"
                                f"{f', on 2x2 blocks, {net.head} head' if net.shuffle == 2 else ''}",
                     "steps": meta.get("steps"), "image_size": training.get("image_size"),
                     "style_weight": training.get("style_weight"), "content_layers": training.get("content_layers"),
                     "photos": training.get("photos")})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("no bundled models", markup=False, soft_wrap=True)
    for r in rows:
        console.print(f"{r['name']:<12} style {r['style']:<18} {r['mb']} MB  {r['network']}; {r['steps']} steps at "
                      f"{r['image_size']} px, style weight {r['style_weight']}, content {r['content_layers']}, "
                      f"{r['photos']} photos",
                      markup=False, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------- export

@app.command()
def export(
    model: Annotated[str, typer.Argument(help="A model file from `stylize train`, or a bundled model's name.",
                                         show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The file to write \\[default: the "
                      "model's name, .onnx or .ts].", show_default=False, dir_okay=False)] = None,
    export_format: Annotated[Optional[ExportFormat], typer.Option("--format", help="onnx or torchscript "
                             "\\[default: from -o's suffix, else onnx].", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
) -> None:
    """Export a trained network as ONNX (onnxruntime) or TorchScript (libtorch); `run --model` takes either."""
    import torch

    from stylize import exported
    from stylize.atomic import check_writable
    from stylize.modelfile import load_model

    with _command():
        loaded = load_model(model)
        if output is None:
            fmt = export_format or ExportFormat.onnx
            output = Path(loaded.path.stem + (".onnx" if fmt is ExportFormat.onnx else ".ts"))
        fmt = exported.format_for(output, export_format)
        if output.resolve() == loaded.path.resolve():
            raise InputError(f"{output}: is the model being exported and is never written over; choose another -o")
        check_writable(output, overwrite)
        exported.export_model(loaded.network, loaded.meta, output, fmt, overwrite)
        try:
            runner = exported.load_exported(output, torch.device("cpu"))
        except exported.MissingRuntime:  # ONNX written, but no onnxruntime here to run it
            console.print(f"saved {output} ({fmt.value}); not checked: onnxruntime is not installed", markup=False,
                          soft_wrap=True)
            return
        difference = exported.check_export(loaded.network, runner)
        if difference > 1e-3:
            raise exported.ExportError(f"{output}: the exported model's output differs from PyTorch's by "
                                       f"{difference:.2g}; please report this")
        console.print(f"saved {output} ({fmt.value}); output matches PyTorch's within {difference:.1g}",
                      markup=False, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------- info

def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show versions, devices, the device `auto` picks, and where each backbone's weights are."""
    import torch
    import torchvision

    from stylize.device import available_devices, resolve_device, resolve_half
    from stylize.features import weights_status

    auto = resolve_device("auto")
    data = {
        "stylize": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "devices": [{"device": d.spec, "name": d.name, "memory_bytes": d.memory_bytes} for d in available_devices()],
        "auto_device": str(auto),
        "half_by_default": resolve_half(auto, None),
        "cpu_threads": torch.get_num_threads(),
        "backbones": {b.value: weights_status(b) for b in Backbone},
        "onnxruntime": _package_version("onnxruntime"),
    }
    if as_json:
        console.print_json(json.dumps(data))
        return
    rows = [("stylize", data["stylize"]), ("python", data["python"]), ("torch", data["torch"]),
            ("torchvision", data["torchvision"])]
    for d in data["devices"]:
        memory = f", {d['memory_bytes'] / 2**30:.1f} GiB" if d["memory_bytes"] else ""
        rows.append((f"device {d['device']}", f"{d['name']}{memory}"))
    half = ("on by default (bfloat16 is native on this CPU; --no-half to turn it off)" if data["half_by_default"]
            else "off by default (--half to turn it on)")
    rows += [("auto picks", data["auto_device"]), ("half precision", half), ("cpu threads", str(data["cpu_threads"])),
             ("onnxruntime", data["onnxruntime"] or "not installed (for .onnx models: pip install 'stylize[onnx]')")]
    rows += [(f"backbone {name}", status) for name, status in data["backbones"].items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.print(f"{key:<{width}}  {value}", markup=False, highlight=False, soft_wrap=True)
