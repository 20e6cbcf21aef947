"""One stylisation as a user asks for it: files in, checks up front, one file out.

Iterative (:func:`prepare` / :func:`execute`) or with a trained network (:func:`prepare_fast` /
:func:`execute_fast`).

Everything that can be wrong with the inputs or the output is found in :func:`prepare`, before
any optimisation starts, so a bad option never costs minutes of work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from stylize.config import BackboneConfig, RunConfig
from stylize.device import make_deterministic, resolve_device
from stylize.errors import ImageError, OutputError
from stylize.features import FeatureExtractor, check_layers, load_weights, min_image_side
from stylize.color import preserve_color
from stylize.imageio import LoadedImage, check_output, fit_long_side, load_image, resize, save_image
from stylize.modelfile import LoadedModel, load_model
from stylize.transformer import stylize_image
from stylize.losses import content_layer_weights, required_layers, style_layer_weights
from stylize.optimize import Progress, ProgressFn, plan_schedule, run_iterative


@dataclass(frozen=True)
class Job:
    content: LoadedImage
    styles: list[LoadedImage]
    output: Path
    overwrite: bool
    config: RunConfig
    extractor: FeatureExtractor
    schedule: list[tuple[tuple[int, int], int]]


@dataclass(frozen=True)
class JobResult:
    image: torch.Tensor
    losses: dict[str, float]
    interrupted: bool
    seconds: float


def default_output(content: Path, styles: list[Path]) -> Path:
    """``photo_x_painting.png`` beside the photo."""
    return content.parent / f"{content.stem}_x_{'+'.join(s.stem for s in styles)}.png"


def _resolve_output(output: Path | None, default: Path) -> Path:
    """``-o`` as given; without it the default name; ``-o FOLDER``: the default name inside it."""
    if output is None:
        return default
    return Path(output) / default.name if Path(output).is_dir() else Path(output)


def snapshot_path(output: Path, scale: int, iteration: int) -> Path:
    """Where ``--save-every`` puts the image of a given scale and iteration."""
    return output.with_name(f"{output.stem}.scale{scale + 1}.iter{iteration:04d}{output.suffix}")


def prepare(content: Path, styles: list[Path], output: Path | None, config: RunConfig,
            backbone: BackboneConfig, device: str, overwrite: bool) -> Job:
    """Validate every input and option, load images and the network; raise StylizeError on any problem."""
    output = _resolve_output(output, default_output(Path(content), [Path(s) for s in styles]))
    content_img = load_image(Path(content))
    style_imgs = [load_image(Path(s)) for s in styles]
    check_output(output, overwrite)
    torch_device = resolve_device(device)
    weights = load_weights(backbone)
    check_layers(weights.arch, list(content_layer_weights(config.loss)), "content layer")
    check_layers(weights.arch, list(style_layer_weights(config.loss)), "style layer")
    layers = required_layers(config.loss)
    min_side = min_image_side(weights.arch, layers)
    for image in (content_img, *style_imgs):
        if min(image.size) < min_side:
            h, w = image.size
            raise ImageError(f"{image.path}: {w}x{h} is too small; the network needs at least "
                             f"{min_side} px on each side")
    schedule = plan_schedule(*content_img.size, config, min_side)
    if config.save_every:
        for index, (_, iterations) in enumerate(schedule):
            for it in range(config.save_every, iterations + 1, config.save_every):
                path = snapshot_path(output, index, it)
                if path.exists() and not overwrite:
                    raise OutputError(f"{path}: exists already; pass --overwrite to replace it")
    make_deterministic(torch_device)
    extractor = FeatureExtractor(weights.arch, weights.state, layers).to(torch_device)
    return Job(content_img, style_imgs, output, overwrite, config, extractor, schedule)


def execute(job: Job, on_progress: ProgressFn | None = None) -> JobResult:
    """Run the optimisation and write the output atomically (also after Ctrl-C: the best so far)."""
    start = time.perf_counter()

    def snapshot(image: torch.Tensor, p: Progress) -> None:
        save_image(image, snapshot_path(job.output, p.scale, p.iteration), _alpha(job, image), overwrite=True)

    result = run_iterative(job.content.rgb, [s.rgb for s in job.styles], job.config, job.extractor,
                           on_progress=on_progress, on_snapshot=snapshot)
    save_image(result.image, job.output, _alpha(job, result.image), overwrite=job.overwrite)
    return JobResult(result.image, result.losses, result.interrupted, time.perf_counter() - start)


def _alpha(job: Job, image: torch.Tensor) -> torch.Tensor | None:
    """The photo's alpha channel at the output's size, or None."""
    if job.content.alpha is None:
        return None
    return resize(job.content.alpha, tuple(image.shape[-2:]))


@dataclass(frozen=True)
class FastJob:
    content: LoadedImage
    output: Path
    overwrite: bool
    model: LoadedModel
    device: torch.device
    size: int | None
    preserve_color: bool


def default_fast_output(content: Path, model: Path) -> Path:
    return content.parent / f"{content.stem}_x_{model.stem}.png"


def prepare_fast(content: Path, model: Path | str, output: Path | None, size: int | None, preserve_color: bool,
                 device: str, overwrite: bool) -> FastJob:
    """Validate inputs and load a trained network (a file or a bundled model's name)."""
    loaded = load_model(model)
    content_img = load_image(Path(content))
    output = _resolve_output(output, default_fast_output(Path(content), loaded.path))
    check_output(output, overwrite)
    if size is not None and size < 16:
        raise ImageError(f"--size must be at least 16 pixels, got {size}")
    torch_device = resolve_device(device)
    make_deterministic(torch_device)
    loaded.network.to(torch_device)
    return FastJob(content_img, output, overwrite, loaded, torch_device, size, preserve_color)


def execute_fast(job: FastJob) -> JobResult:
    """Stylise in one forward pass and write the output atomically."""
    start = time.perf_counter()
    image = job.content.rgb
    if job.size is not None:
        image = resize(image, fit_long_side(*image.shape[-2:], job.size))
    result = stylize_image(job.model.network, image, job.device)
    if job.preserve_color:
        result = preserve_color(result, image)
    alpha = None if job.content.alpha is None else resize(job.content.alpha, tuple(result.shape[-2:]))
    save_image(result, job.output, alpha, overwrite=job.overwrite)
    return JobResult(result, {}, False, time.perf_counter() - start)
