"""The iterative method of Gatys et al.: optimise the pixels of an image, coarse to fine.

Each scale optimises at one resolution and hands its result, upsampled, to the next. Most of
the structure forms cheaply at low resolution, so the expensive full-size iterations only add
detail; this is what makes the default run fast (see benchmarks/iterative.py).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stylize.color import match_color, preserve_color
from stylize.config import (AUTO_FIRST_SCALE, AUTO_ITERATIONS, MIN_ITERATIVE_TILE, InitKind, OptimizerKind,
                            RunConfig)
from stylize.cudagraph import record
from stylize.device import autocast, half_dtype, resolve_half
from stylize.errors import ImageError, InputError
from stylize.features import (FIXED_BYTES, FeatureExtractor, conv_values_per_pixel, layer_stride,
                              layer_values_per_pixel, reach)
from stylize.imageio import fit_long_side, fit_long_side_at_least, resize, resize_cover
from stylize.lbfgs import LBFGS
from stylize.tiledloss import TiledObjective, plan_tiles, tiled_statistics
from stylize.losses import (LossParts, PerceptualLoss, blend_statistics, content_layer_weights, required_layers,
                            style_layer_weights, style_statistics, temporal_consistency)

# Memory of an iterative run, per pixel of the largest scale. Measured on the CPU as the peak
# resident memory of 3-iteration single-scale runs (768x576, VGG-16 to relu5_1): 3.3 kB per
# pixel, i.e. 12.4 bytes per convolution output (kept for the backward pass, plus its
# gradient); L-BFGS adds its memory of 2 x history images, and the rest (weights, style
# features, the images of the schedule) is about features.FIXED_BYTES.
BYTES_PER_CONV_VALUE = 12.5
# --mask: each style layer's guided features, kept for its Gram's backward (a 1024x768 run took
# 0.14-0.16 GiB more, about 1.8 bytes per style-layer value, in bfloat16 and float32 alike).
GUIDE_BYTES_PER_VALUE = 4
# Pairs L-BFGS remembers. 50 ended the default run 0.6 % lower on average over eight pairs
# (from 2.8 % lower to 0.8 % higher), at 2.5x the memory (the 1024 px run peaked 0.43 GiB
# higher) and of the two-loop's reads per step; 10 was 9 % higher on one pair
# (benchmarks/lbfgs_policy.py). Gatys et al. used scipy's L-BFGS-B, which remembers 10.
LBFGS_HISTORY = 20

# The largest scale, in pixels, whose objective is replayed as a CUDA graph. Below it a step is
# bound by Python launching kernels and the graph halves it (H200, the default 512 px run:
# 1.20 against 0.52 s; 1024 px: 1.27 against 0.93 s); at 2048x1365 the GPU's arithmetic bounds
# it (2.44 against 2.42 s), and the graph's memory pool would still cost 1.45x the reserved
# memory (11.9 against 8.2 GiB).
GRAPH_MAX_PIXELS = 1024 * 1024


def style_size(config: RunConfig, output: tuple[int, int], style: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The size (h, w) a style image of size ``style`` is used at for an output of size ``output``:
    its long side --style-scale times the output's, its short side at least what the network needs."""
    long_side = max(8, round(config.style_scale * max(output)))
    return fit_long_side_at_least(*style, long_side, min_side)


def estimate_memory(arch: str, config: RunConfig, height: int, width: int, masked: bool = False) -> int:
    """Rough peak memory in bytes of an iterative run whose largest scale is height x width
    (``masked``: with a --mask guiding the style loss)."""
    values = conv_values_per_pixel(arch, required_layers(config.loss))
    optimizer_images = 2 if config.optimizer is OptimizerKind.adam else 2 * LBFGS_HISTORY
    per_pixel = BYTES_PER_CONV_VALUE * values + 12 * (optimizer_images + 4)  # + image, grad, best, content
    if masked:
        per_pixel += GUIDE_BYTES_PER_VALUE * layer_values_per_pixel(arch, list(style_layer_weights(config.loss)))
    return int(per_pixel * height * width + FIXED_BYTES)


def estimate_tiled_memory(arch: str, config: RunConfig, height: int, width: int, tile: int,
                          masked: bool = False) -> int:
    """Rough peak memory in bytes of an iterative run at height x width whose passes go through
    tiles of ``tile`` pixels (stylize.tiledloss): one tile's pass, with its margin, and the whole
    image's optimiser state, gradient and content targets (``masked``: and a --mask's guides)."""
    layers = required_layers(config.loss)
    margin, stride = reach(arch, layers)
    side = min(tile // stride * stride + 2 * -(-margin // stride) * stride, max(height, width))
    per_crop_pixel = BYTES_PER_CONV_VALUE * conv_values_per_pixel(arch, layers)
    style_values = layer_values_per_pixel(arch, list(style_layer_weights(config.loss)))
    per_crop_pixel += GUIDE_BYTES_PER_VALUE * style_values if masked else 0
    optimizer_images = 2 if config.optimizer is OptimizerKind.adam else 2 * LBFGS_HISTORY
    whole = 12 * (optimizer_images + 5) + 4 * layer_values_per_pixel(arch, list(content_layer_weights(config.loss)))
    if masked:  # the guides: a value for each position of each style layer
        whole += 4 * sum(1 / layer_stride(arch, name) ** 2 for name in style_layer_weights(config.loss))
    return int(per_crop_pixel * side * min(side, height, width) + whole * height * width + FIXED_BYTES)


def largest_fitting_tile(arch: str, config: RunConfig, height: int, width: int, budget: int,
                         masked: bool = False) -> int | None:
    """The largest tile (a multiple of 64 pixels, at least MIN_ITERATIVE_TILE) whose tiled run fits
    ``budget`` bytes; None if even the smallest does not."""
    fitting = [t for t in range(MIN_ITERATIVE_TILE, max(height, width) + 64, 64)
               if estimate_tiled_memory(arch, config, height, width, t, masked) <= budget]
    return fitting[-1] if fitting else None


def largest_fitting_size(arch: str, config: RunConfig, height: int, width: int, budget: int,
                         masked: bool = False, tiled: bool = False) -> int:
    """The largest --size (long side) whose run fits ``budget`` bytes, for an image of this shape
    (``tiled``: in tiles of the smallest size)."""
    def need(side: int) -> int:
        h, w = fit_long_side(height, width, side)
        if tiled:
            return estimate_tiled_memory(arch, config, h, w, MIN_ITERATIVE_TILE, masked)
        return estimate_memory(arch, config, h, w, masked)

    low, high = 0, max(height, width)
    while low < high:  # the memory grows with the side
        middle = (low + high + 1) // 2
        low, high = (middle, high) if need(middle) <= budget else (low, middle - 1)
    return low


@dataclass(frozen=True)
class Progress:
    """Reported after every iteration."""

    scale: int  # 0-based index of the current scale
    scales: int
    height: int
    width: int
    iteration: int  # 1-based, within the scale
    iterations: int
    losses: dict[str, float]
    elapsed: float  # seconds since the run started
    work_done: float  # 0-1, the share of the whole run's work done (for an ETA; see work_done)


@dataclass(frozen=True)
class Result:
    image: torch.Tensor  # [1,3,H,W] in [0,1], on the CPU
    losses: dict[str, float]
    interrupted: bool  # Ctrl-C: `image` is the best one so far


@dataclass(frozen=True)
class Temporal:
    """A video frame's temporal term (Ruder et al. 2016): the previous frame's result moved onto
    this one (``target``, [1,3,H,W] at the run's full size), trusted where ``weights`` ([1,1,H,W])
    are 1, and the term's weight in the objective."""

    target: torch.Tensor
    weights: torch.Tensor
    weight: float


ProgressFn = Callable[[Progress], None]
SnapshotFn = Callable[[torch.Tensor, Progress], None]


def plan_schedule(height: int, width: int, config: RunConfig, min_side: int) -> list[tuple[tuple[int, int], int]]:
    """[(output (h, w), iterations)] for each scale, smallest first."""
    sizes = _scale_sizes(config)
    plan = [fit_long_side(height, width, s) for s in sizes]
    usable = [hw for hw in plan if min(hw) >= min_side]
    if not usable:
        raise ImageError(f"--size {config.size} gives a {plan[-1][1]}x{plan[-1][0]} image; the network needs "
                         f"at least {min_side} px on each side: raise --size")
    iterations = _iterations(config, len(usable))
    return list(zip(usable, iterations))


def check_iterations(config: RunConfig) -> None:
    """Raise if --iterations lists a number for each scale but not as many as --scales and
    --size make (before any photo is read: a batch failed every photo on it, one by one)."""
    count = len(_scale_sizes(config))
    if config.iterations is not None and len(config.iterations) not in (1, count):
        scales = "1 scale" if count == 1 else f"{count} scales"
        raise InputError(f"--iterations lists {len(config.iterations)} values but --size {config.size} makes "
                         f"{scales}; give one value, or {count}")


def work_done(schedule: list[tuple[tuple[int, int], int]], scale: int, iteration: int,
              tiles: tuple[int, int, int] | None = None) -> float:
    """The share of a run's work done after ``iteration`` of ``scale``, an iteration's work taken
    as its scale's pixel count (the backbone's cost grows with it): the default 100 iterations at
    256 px are a third of the work, the 50 at 512 px two thirds. ``tiles``: (tile, margin,
    stride) of a tiled run, whose scales larger than a tile count their tiles' crops, forward
    twice and backward once (4/3 of a pass)."""
    def pixels(h: int, w: int) -> float:
        if tiles is None or max(h, w) <= tiles[0]:
            return h * w
        return sum((b - t) * (r - l) for t, b, l, r in (tile.crop for tile in plan_tiles(h, w, *tiles))) * 4 / 3

    work = [pixels(h, w) * iterations for (h, w), iterations in schedule]
    return (sum(work[:scale]) + work[scale] * iteration / schedule[scale][1]) / sum(work)


def _scale_sizes(config: RunConfig) -> list[int]:
    """Long sides of the scales: listed ones below --size, or a number of halvings ending at it."""
    if isinstance(config.scales, tuple):
        return [*sorted({s for s in config.scales if s < config.size}), config.size]
    count = config.scales if config.scales is not None else auto_scale_count(config.size)
    return [round(config.size / 2 ** (count - 1 - i)) for i in range(count)]


def auto_scale_count(size: int) -> int:
    """The automatic schedule's number of scales for --size ``size``: halvings that bring the
    first scale nearest AUTO_FIRST_SCALE px (one scale below that size, two at least from it)."""
    if size < AUTO_FIRST_SCALE:
        return 1
    return max(2, 1 + round(math.log2(size / AUTO_FIRST_SCALE)))


def _iterations(config: RunConfig, count: int) -> list[int]:
    if config.iterations is None:
        earlier, last = AUTO_ITERATIONS
        return [earlier] * (count - 1) + [last]
    if len(config.iterations) == 1:
        return list(config.iterations) * count
    if len(config.iterations) != count:
        scales = "1 scale" if count == 1 else f"{count} scales"  # --scales, or fewer where the image is too small
        raise ImageError(f"--iterations lists {len(config.iterations)} values but the run has {scales}")
    return list(config.iterations)


def iterative_half(device: torch.device, half: bool | None) -> bool:
    """Whether the iterative method runs its VGG passes in bfloat16 on ``device`` (--half, or the
    device's default); where --half would mean float16 it is refused: its gradients underflow."""
    half = resolve_half(device, half)
    if half and half_dtype(device) != torch.bfloat16:
        raise InputError(f"--half: the iterative method needs bfloat16, which {device.type} lacks "
                         "(float16 gradients underflow); leave --half out")
    return half


class StyleCache:
    """Style statistics per (style image, how it is used: its size and tiles), so that a batch
    computes each only once (a sweep's --style-scale values each at their own size).

    Keyed by the identity of the style tensor the caller passed in (the cache keeps a reference
    to it, so the identity cannot be reused); valid for one extractor, style statistic and set of
    style layers.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, tuple[int, ...]], tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    def get(self, style: torch.Tensor, use: tuple[int, ...],
            compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        key = (id(style), use)
        if key not in self._entries:
            self._entries[key] = (style, compute())
        return self._entries[key][1]


class ScaleProblem:
    """The objective at one resolution: content targets and blended style targets; with a
    ``mask`` ([1,1,H,W], any size of the content's proportions), the style only where it selects."""

    def __init__(self, extractor: FeatureExtractor, config: RunConfig, content: torch.Tensor,
                 styles: list[torch.Tensor], size: tuple[int, int], cache: StyleCache | None = None,
                 keys: list[torch.Tensor] | None = None, mask: torch.Tensor | None = None,
                 tile: int | None = None, temporal: Temporal | None = None) -> None:
        self.extractor = extractor
        self.device = next(extractor.parameters()).device
        self.temporal = None if temporal is None else Temporal(
            resize(temporal.target.to(self.device), size), resize(temporal.weights.to(self.device), size),
            temporal.weight)
        # The targets below are float32; each evaluation may run the VGG in bfloat16 (--half).
        self.half = iterative_half(self.device, config.half)
        loss_cfg = config.loss
        self.content_layers = set(content_layer_weights(loss_cfg))
        style_layers = set(style_layer_weights(loss_cfg))
        self.content = resize(content, size)
        # Larger than a tile: evaluated in tiles, the same objective in a tile's memory.
        self.tiled = tile is not None and max(size) > tile

        def tiles_of(used: tuple[int, int]) -> int:
            """The tile a style image used at this size is read in (a tiled run's may not fit whole
            either); 0: whole. Part of the cache's key: the rounding differs."""
            return tile if self.tiled and tile is not None and max(used) > tile else 0

        def statistics(style: torch.Tensor, used: tuple[int, int]) -> dict[str, torch.Tensor]:
            if tiles_of(used):
                return tiled_statistics(extractor, resize(style, used), list(style_layers), loss_cfg.style_loss,
                                        tiles_of(used))
            feats = extractor(resize(style, used))
            return style_statistics({n: feats[n] for n in style_layers}, loss_cfg.style_loss)

        with torch.no_grad():
            cache = cache or StyleCache()
            used = [style_size(config, size, tuple(style.shape[-2:]), extractor.min_side) for style in styles]
            stats = [cache.get(key, (*at, tiles_of(at)), functools.partial(statistics, style, at))
                     for style, key, at in zip(styles, keys or styles, used)]
            blend = blend_statistics(stats, list(config.style_blend) if config.style_blend else [1.0] * len(styles))
            if self.tiled:  # the guides at each style layer's size of the whole image (VGG's pooling floors)
                guides = None if mask is None else {n: resize(mask.to(self.device), (
                    size[0] // layer_stride(extractor.arch, n), size[1] // layer_stride(extractor.arch, n)))
                    for n in style_layers}
                self.tiled_loss = TiledObjective(extractor, loss_cfg, self.content, blend, tile, self.half, guides)
                return
            # With a mask, the style layers' sizes come from the same pass, for its guides.
            feats = extractor(self.content, self.content_layers | (style_layers if mask is not None else set()))
            self.content_targets = {n: feats[n] for n in self.content_layers}
            guides = None if mask is None else {
                n: resize(mask.to(self.device), tuple(feats[n].shape[-2:])) for n in style_layers}
        self.loss_fn = PerceptualLoss(loss_cfg, blend, guides)

    def __call__(self, image: torch.Tensor) -> LossParts:
        # Under autocast the errors stay float32 and the Grams come out float32 (losses.py).
        with autocast(self.device, self.half):
            parts = self.loss_fn(image, self.extractor(image), self.content_targets)
        return self._with_temporal(parts, image)

    def _with_temporal(self, parts: LossParts, image: torch.Tensor) -> LossParts:
        if self.temporal is None:
            return parts
        term = temporal_consistency(image, self.temporal.target, self.temporal.weights)
        return parts.with_temporal(self.temporal.weight * term)

    def value(self, image: torch.Tensor) -> LossParts:
        """The objective at ``image``, without its gradient."""
        with torch.no_grad():
            return self._with_temporal(self.tiled_loss.value(image), image) if self.tiled else self(image)

    def evaluate(self, image: torch.Tensor) -> LossParts:
        """The objective at ``image`` (a leaf), its gradient left in ``image.grad``."""
        if self.tiled:  # the tiles' gradient is in image.grad; the pixels' own term adds to it
            parts = self._with_temporal(self.tiled_loss.evaluate(image), image)
            if parts.temporal is not None:
                parts.temporal.backward()
            return parts
        image.grad = None
        parts = self(image)
        parts.total.backward()
        return parts


def initial_image(config: RunConfig, content: torch.Tensor, styles: list[torch.Tensor]) -> torch.Tensor:
    """The starting point of the first scale, at the content's size."""
    if config.init is InitKind.random:
        generator = torch.Generator().manual_seed(config.seed)
        # Mid-grey noise: white noise as in Gatys et al., but not so strong that it dominates TV.
        noise = torch.rand(content.shape, generator=generator)
        return (0.5 + 0.5 * (noise - 0.5)).to(content.device)
    if config.init is InitKind.style:
        return resize_cover(styles[0], tuple(content.shape[-2:]))
    return content.clone()


def run_iterative(content: torch.Tensor, styles: list[torch.Tensor], config: RunConfig,
                  extractor: FeatureExtractor, on_progress: ProgressFn | None = None,
                  on_snapshot: SnapshotFn | None = None, cache: StyleCache | None = None,
                  init: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                  full_size_only: bool = False, tile: int | None = None, temporal: Temporal | None = None) -> Result:
    """Stylise ``content`` ([1,3,H,W] in [0,1]) with ``styles``; tensors are moved to the extractor's device.

    ``cache`` keeps style statistics between runs with the same extractor and config (a batch);
    ``init`` replaces the starting image (e.g. the result of an interrupted run, to go on from it);
    ``mask`` ([1,1,H,W] in [0,1]) confines the style loss to where it is white (``ScaleProblem``);
    ``full_size_only``: run the schedule's last scale alone (``init``: a video's previous frame);
    ``tile``: scales larger than this many pixels are evaluated in tiles (stylize.tiledloss);
    ``temporal``: a video frame's temporal term, at the last scale."""
    device = next(extractor.parameters()).device
    torch.manual_seed(config.seed)
    content = content.to(device)
    keys, styles = styles, [s.to(device) for s in styles]
    if config.match_color:
        # Each photo recolours the styles its own way: their statistics are this run's alone.
        styles, keys, cache = [match_color(s, content) for s in styles], None, None
    schedule = plan_schedule(*content.shape[-2:], config, extractor.min_side)
    if full_size_only:
        schedule = schedule[-1:]
    tiles = None if tile is None else (tile, *reach(extractor.arch, required_layers(config.loss)))
    start = time.perf_counter()
    first = schedule[0][0]
    if init is not None:
        best = resize_cover(init.to(device), first)
    else:
        best = initial_image(config, resize(content, first), [resize(s, first) for s in styles])
    best_content, losses = resize(content, first), {}
    state: ScaleOptimizer | None = None
    try:
        for index, (size, iterations) in enumerate(schedule):
            last = index == len(schedule) - 1
            problem = ScaleProblem(extractor, config, content, styles, size, cache, keys, mask, tile,
                                   temporal if last else None)
            start_image = best if index == 0 else hand_over(best, best_content, problem.content)
            state = ScaleOptimizer(problem, config, start_image)
            for it in range(1, iterations + 1):
                state.step()
                progress = Progress(index, len(schedule), size[0], size[1], it, iterations, state.last_losses,
                                    time.perf_counter() - start, work_done(schedule, index, it, tiles))
                if on_progress:
                    on_progress(progress)
                if on_snapshot and config.save_every and it % config.save_every == 0:
                    on_snapshot(_finish(state.image.detach(), problem.content, config), progress)
            state.evaluate()
            best, best_content, losses = state.best, problem.content, state.best_losses
            state = None
    except KeyboardInterrupt:
        if state is not None and state.best_losses:  # this scale has already improved on the last
            best, best_content, losses = state.best, state.problem.content, state.best_losses
        return Result(_finish(best, best_content, config).cpu(), losses, interrupted=True)
    return Result(_finish(best, best_content, config).cpu(), losses, interrupted=False)


def hand_over(image: torch.Tensor, content_before: torch.Tensor, content_now: torch.Tensor) -> torch.Tensor:
    """The last scale's result at the next scale's size, plus the photo's detail that the
    upsampling lost (the photo at this size minus the photo at the last size, upsampled).

    Upsampled alone, the result is blurred, and the full-size iterations, the expensive ones,
    first spend themselves on restoring the photo's edges: with the detail added, 150 + 30
    iterations ended 11 % lower in objective at 512 px (benchmarks/iterative.py)."""
    # Not clamped here: the optimiser projects into [0,1] after its first step, and clamping
    # the start as well ended 1 % higher (0.9359 against 0.9270 for the default at 512 px).
    size = tuple(content_now.shape[-2:])
    return resize(image, size) + content_now - resize(content_before, size)


def _finish(image: torch.Tensor, content: torch.Tensor, config: RunConfig) -> torch.Tensor:
    image = image.detach().clamp(0.0, 1.0)
    return preserve_color(image, content) if config.preserve_color else image


class ScaleOptimizer:
    """One optimiser over the pixels at one resolution, remembering the best image seen."""

    def __init__(self, problem: ScaleProblem, config: RunConfig, image: torch.Tensor) -> None:
        self.problem = problem
        self.image = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        self.adam = config.optimizer is OptimizerKind.adam
        self.learning_rate = config.learning_rate
        # On a GPU the objective is replayed as a CUDA graph (stylize.cudagraph): the same
        # kernels, launched at once instead of one by one from Python.
        graph = config.cuda_graph and self.image[0, 0].numel() <= GRAPH_MAX_PIXELS and not problem.tiled
        self._objective = (record(self._evaluate, self.image.device) if graph else None) or self._evaluate
        self.optimizer = self._new_optimizer()
        self.best = self.image.detach().clone()
        self.best_loss = math.inf
        self.best_losses: dict[str, float] = {}
        self.last_losses: dict[str, float] = {}
        self._evaluations = 0

    def _new_optimizer(self) -> torch.optim.Optimizer | LBFGS:
        if self.adam:
            return torch.optim.Adam([self.image], lr=self.learning_rate)
        # No line search: one evaluation per iteration, and L-BFGS's own curvature estimate
        # (s.y / y.y) makes the step length independent of the loss scale and hence of the image
        # size. torch's strong-Wolfe search doubled the cost per iteration and, at 512 px,
        # stalled for good on a non-descent direction. Every iteration asked for is run (torch's
        # default tolerances stopped early on the tiny per-pixel gradients of large images).
        # stylize.lbfgs computes torch's steps without its 44 host synchronisations a step.
        return LBFGS(self.image, LBFGS_HISTORY)

    def _evaluate(self) -> LossParts:
        """The objective and its gradient (into ``image.grad``) at the current pixels."""
        return self.problem.evaluate(self.image)

    def _closure(self) -> torch.Tensor:
        parts = self._objective()
        if self._evaluations == 0:  # the first evaluation of a step is at the current image
            self._record(parts)
        self._evaluations += 1
        return parts.total

    def _record(self, parts: LossParts) -> None:
        self.last_losses = parts.as_floats()
        if self.last_losses["total"] < self.best_loss:
            self.best_loss = self.last_losses["total"]
            self.best_losses = self.last_losses
            self.best = self.image.detach().clone()

    def step(self) -> None:
        version = self.image._version  # bumped by the optimiser's in-place update of the pixels
        self._evaluations = 0
        self.optimizer.step(self._closure)
        if not self.adam and self.image._version == version:
            # L-BFGS found no descent direction and left the pixels as they were; with
            # the same memory it would do so forever. Restart it from the current image.
            # (An uphill step alone keeps the memory: restarting then, as stylize did before,
            # threw away the curvature learnt so far and ended 2.2 % higher on average over
            # eight pairs, up to 8 %; benchmarks/lbfgs_policy.py.)
            self.optimizer = self._new_optimizer()
        # Keep the pixels in range at every step (projected optimisation). Left free, L-BFGS
        # matches the style with values outside [0,1] and the final clamp then loses part of it:
        # at 256 px after 100 iterations the delivered image's objective was 8 % worse. (L-BFGS's
        # memory records the intended step, so the projection makes it approximate; that did not
        # slow convergence.)
        with torch.no_grad():
            self.image.clamp_(0.0, 1.0)

    def evaluate(self) -> None:
        """Score the image after the last step, so it can count as the best."""
        with torch.no_grad():
            self._record(self.problem.value(self.image))
