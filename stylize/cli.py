"""The command line: option parsing, progress display, messages and exit codes.

This is the only module that prints or exits. Core errors (:class:`StylizeError`) become a
one-line message and exit code 2; Ctrl-C exits with 130 after keeping what was done.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperGroup

from stylize import __version__
from stylize.config import (Backbone, BackboneConfig, InitKind, LossConfig, OptimizerKind, RunConfig, StyleLossKind,
                            parse_layer_weights, parse_numbers, parse_scales)
from stylize.errors import ImageError, InputError, StylizeError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_RUN = RunConfig()
DEFAULT_LOSS = LossConfig()


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
            err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
            rv = exc.exit_code
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neural style transfer: stylize a photo with a painting.")
console = Console()
err_console = Console(stderr=True)


def main() -> None:
    """Console-script entry point."""
    app()


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


# ---------------------------------------------------------------------------------------- run

@app.command()
def run(
    content: Annotated[Path, typer.Argument(help="The photo to stylize.", metavar="CONTENT",
                                                   show_default=False)],
    styles: Annotated[Optional[list[Path]], typer.Argument(help="One or more style images (paintings).",
                                                           metavar="STYLE", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output image (.png, .jpg, .webp, .tif). "
                      "Default: CONTENT_x_STYLE.png beside the photo.", show_default=False)] = None,
    size: Annotated[int, typer.Option(help="Long side of the output in pixels.")] = DEFAULT_RUN.size,
    iterations: Annotated[Optional[str], typer.Option(help="Iterations per scale: one number for every scale, "
                          "or a list such as 150,60. Default: 60 at full size, 2.5 times more at each halving.")] = None,
    scales: Annotated[Optional[str], typer.Option(help="Coarse-to-fine schedule: a number of scales, each twice the "
                      "last (1 = single scale), or sizes such as 128,256. Default: 2 (half size, then full).")] = None,
    optimizer: Annotated[OptimizerKind, typer.Option(help="Optimiser.")] = DEFAULT_RUN.optimizer,
    lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate.")] = DEFAULT_RUN.learning_rate,
    init: Annotated[InitKind, typer.Option(help="Starting image.")] = DEFAULT_RUN.init,
    content_weight: Annotated[float, typer.Option(help="alpha: weight of the content loss.")] = DEFAULT_LOSS.content_weight,
    style_weight: Annotated[float, typer.Option(help="beta: weight of the style loss.")] = DEFAULT_LOSS.style_weight,
    tv_weight: Annotated[float, typer.Option(help="Weight of total-variation smoothing.")] = DEFAULT_LOSS.tv_weight,
    content_layers: Annotated[str, typer.Option(help="Content layers, optionally weighted: relu4_2 or "
                              "relu3_2:0.5,relu4_2.")] = "relu4_2",
    style_layers: Annotated[str, typer.Option(help="Style layers with optional weights (normalised to sum 1), "
                            "e.g. relu1_1:2,relu2_1,relu3_1.")] = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1",
    style_loss: Annotated[StyleLossKind, typer.Option(help="Style statistic: Gram matrices or per-channel "
                          "mean and std.")] = DEFAULT_LOSS.style_loss,
    style_blend: Annotated[Optional[str], typer.Option(help="Weights of several style images, e.g. 0.7,0.3.")] = None,
    style_scale: Annotated[float, typer.Option(help="Size of the style image relative to the output.")] = DEFAULT_RUN.style_scale,
    preserve_color: Annotated[bool, typer.Option("--preserve-color", help="Keep the photo's colours "
                              "(transfer luminance only).")] = False,
    save_every: Annotated[int, typer.Option(help="Save an intermediate image every N iterations.")] = 0,
    backbone: Annotated[Optional[Backbone], typer.Option(help="Feature network. vgg16 is bundled; vgg19 and "
                        "vgg16-imagenet are downloaded by torchvision. [default: vgg16]", show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Local torchvision VGG-16/19 state dict (full model or "
                       "features only).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (same inputs, seed and device: same output).")] = DEFAULT_RUN.seed,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Stylize CONTENT with one or more STYLE images (Gatys et al.'s iterative method)."""
    from stylize import job as jobs  # heavy imports (torch) only when a command runs

    try:
        if not styles:
            raise InputError("give at least one style image: stylize run PHOTO PAINTING")
        loss = LossConfig(
            content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
            content_layers=parse_layer_weights(content_layers, "--content-layers"),
            style_layers=parse_layer_weights(style_layers, "--style-layers"), style_loss=style_loss)
        blend = parse_numbers(style_blend, "--style-blend") if style_blend else None
        if blend is not None and len(blend) != len(styles):
            raise InputError(f"--style-blend has {len(blend)} weights for {len(styles)} style image(s)")
        config = RunConfig(
            size=size, scales=parse_scales(scales) if scales else None,
            iterations=parse_numbers(iterations, "--iterations", int) if iterations else None,
            optimizer=optimizer, learning_rate=lr, init=init, seed=seed, style_scale=style_scale,
            style_blend=blend, preserve_color=preserve_color, save_every=save_every, loss=loss)
        backbone_cfg = BackboneConfig(name=backbone, weights=weights, download_progress=not quiet)
        job = jobs.prepare(content, list(styles), output, config, backbone_cfg, device, overwrite)
        with _progress_display(quiet) as report:
            result = jobs.execute(job, on_progress=report)
    except StylizeError as exc:
        raise _fail(str(exc)) from None
    if result.interrupted:
        err_console.print(f"interrupted: kept the best image so far in {job.output}", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    h, w = result.image.shape[-2:]
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    console.print(f"saved {job.output} ({w}x{h}) in {result.seconds:.1f} s; loss: {losses}", markup=False,
                  highlight=False, soft_wrap=True)


class _progress_display:
    """A rich progress bar over all scales, fed by the optimiser's progress callback."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self.done: dict[int, float] = {}

    def __enter__(self):
        if self.quiet:
            return None
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                                 console=err_console, transient=False)
        self.progress.__enter__()
        self.task = self.progress.add_task("starting", total=None, losses="")
        return self.update

    def update(self, p: Any) -> None:
        assert self.progress is not None
        # Work per scale grows with the pixel count; weigh each iteration by it for a fair ETA.
        weights = [4.0 ** i for i in range(p.scales)]
        share = weights[p.scale] / sum(weights)
        finished = sum(weights[:p.scale]) / sum(weights)
        description = f"scale {p.scale + 1}/{p.scales} {p.width}x{p.height} it {p.iteration}/{p.iterations}"
        losses = " ".join(f"{k[0]}={v:.3g}" for k, v in p.losses.items() if k != "total")
        self.progress.update(self.task, total=1.0, completed=finished + share * p.iteration / p.iterations,
                             description=description, losses=f"loss {p.losses.get('total', 0):.4g} ({losses})")

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


# --------------------------------------------------------------------------------------- info

@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show versions, devices, the device `auto` picks, and where each backbone's weights are."""
    import torch
    import torchvision

    from stylize.device import available_devices, resolve_device
    from stylize.features import weights_status

    data = {
        "stylize": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "devices": [{"device": d.spec, "name": d.name, "memory_bytes": d.memory_bytes} for d in available_devices()],
        "auto_device": str(resolve_device("auto")),
        "cpu_threads": torch.get_num_threads(),
        "backbones": {b.value: weights_status(b) for b in Backbone},
    }
    if as_json:
        console.print_json(json.dumps(data))
        return
    rows = [("stylize", data["stylize"]), ("python", data["python"]), ("torch", data["torch"]),
            ("torchvision", data["torchvision"])]
    for d in data["devices"]:
        memory = f", {d['memory_bytes'] / 2**30:.1f} GiB" if d["memory_bytes"] else ""
        rows.append((f"device {d['device']}", f"{d['name']}{memory}"))
    rows += [("auto picks", data["auto_device"]), ("cpu threads", str(data["cpu_threads"]))]
    rows += [(f"backbone {name}", status) for name, status in data["backbones"].items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.print(f"{key:<{width}}  {value}", markup=False, highlight=False, soft_wrap=True)
