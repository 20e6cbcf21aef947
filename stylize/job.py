"""Stylising photos as a user asks for it: the networks loaded once, checks before any work.

:class:`Iterative` (Gatys et al.: the VGG, style statistics cached across photos) and
:class:`Fast` (a trained network) are shared by a single run (:func:`prepare` /
:func:`execute`, :func:`prepare_fast` / :func:`execute_fast`) and by batches (stylize.batchrun).
Everything that can be wrong with the inputs or the output is found before the optimisation
starts, so a bad option never costs minutes of work.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from stylize.animation import AnimationWriter, FrameProgress, animated_mask, check_animation, frame_masks, read_frames
from stylize.atomic import check_space
from stylize.color import preserve_color
from stylize.config import (FIRST_FRAME_ITERATIONS, MIN_ITERATIVE_TILE, BackboneConfig, InitKind, RunConfig, Variant,
                            check_temporal_weight)
from stylize.cudagraph import SameShapeReplay
from stylize.device import gigabytes, make_deterministic, memory_budget, resolve_device, resolve_half
from stylize.errors import ImageError, InputError, OutputError, ResourceError, StylizeError
from stylize.exported import ExportedModel, is_exported, load_exported
from stylize.features import estimate_style_memory, load_loss_extractor
from stylize.imageio import (DEFAULT_MAX_PIXELS, DEFAULT_QUALITY, LoadedImage, apply_mask, check_output,
                             fit_long_side, load_image, load_mask, output_bytes, resize, save_result)
from stylize.losses import content_layer_weights, style_layer_weights
from stylize.modelfile import LoadedModel, bundled_models_dir, load_model
from stylize.motion import carry, follow, hold
from stylize.optimize import (Progress, ProgressFn, Result, StyleCache, Temporal, check_iterations, estimate_memory,
                              estimate_tiled_memory, iterative_half, largest_fitting_size, largest_fitting_tile,
                              plan_schedule, run_iterative, style_size)
from stylize.recipe import Recipe, iterative_recipe, model_recipe
from stylize.tiling import MIN_TILE, TileProgress, estimate_bytes, largest_fitting_side, stylize_tiled
from stylize.transformer import STRIDE, for_inference, infer

# A fast run's photo, result and the copy written out, per pixel of the result: 33 bytes over the
# loaded process for a tiled 6000x4000 run (benchmarks/memory.py); the tiles' own work is bounded.
IMAGE_BYTES_PER_PIXEL = 36


class Iterative:
    """The VGG and the run's configuration, loaded once; style statistics cached across photos."""

    def __init__(self, config: RunConfig, backbone: BackboneConfig, device: str) -> None:
        self.device = resolve_device(device)
        # Resolved once (and float16 refused) before anything is loaded.
        config = replace(config, half=iterative_half(self.device, config.half))
        check_iterations(config)
        make_deterministic(self.device)
        self.extractor, _ = load_loss_extractor(backbone, list(content_layer_weights(config.loss)),
                                                list(style_layer_weights(config.loss)), self.device)
        self.arch = self.extractor.arch
        self.min_side = self.extractor.min_side
        self.config, self.backbone = config, backbone
        self.cache = StyleCache()
        # Style images read by batches, each once for this stylizer's life (stylize.batchrun), so
        # that the statistics cached by their tensors serve every photo and every sweep's variant.
        self.style_images: dict[Path, LoadedImage | StylizeError] = {}
        self._tiles: dict[tuple[tuple[int, int], bool], int | None] = {}  # tile_for's decisions

    def varied(self, variant: Variant) -> Iterative:
        """The same network (loaded once) with a sweep's ``variant`` of the options; the style images
        and their statistics' cache are shared too (it keys them by the size a style is used at)."""
        other = copy.copy(self)
        other.config, other._tiles = variant.apply(self.config), {}
        return other

    def recipe(self, content: LoadedImage, styles: list[LoadedImage], schedule: list[tuple[tuple[int, int], int]],
               init: LoadedImage | None = None, mask: Path | None = None, invert_mask: bool = False) -> Recipe:
        """How a run of ``content`` with ``styles`` by ``schedule`` (``check``'s) is made."""
        frames = content.frames > 1 or self.config.init is InitKind.previous
        return iterative_recipe(self.config, self.backbone, schedule, self.device, content.path,
                                [s.path for s in styles], None if init is None else init.path, mask, invert_mask,
                                self.tile_for(schedule[-1][0], mask is not None), frames)

    def tile_for(self, size: tuple[int, int], masked: bool = False) -> int | None:
        """The tile size of a run whose largest scale is ``size`` (None: no scale is tiled; ``masked``:
        with a --mask): --tile, or where the run would not fit in memory whole, the largest tile
        that does. Decided once for each size (the free memory moves; the check, the run and its
        recipe must agree)."""
        if (size, masked) not in self._tiles:
            tile = self.config.tile
            if tile is None:
                need, budget = estimate_memory(self.arch, self.config, *size, masked), memory_budget(self.device)
                fits = budget is None or need <= budget
                tile = None if fits else largest_fitting_tile(self.arch, self.config, *size, budget, masked)
            self._tiles[(size, masked)] = tile if tile and max(size) > tile else None
        return self._tiles[(size, masked)]

    def check(self, content: LoadedImage, styles: list[LoadedImage],
              masked: bool = False) -> list[tuple[tuple[int, int], int]]:
        """Raise if an image is too small or the run (``masked``: with a --mask) would not fit in
        memory; return the schedule."""
        for image in (content, *styles):
            if min(image.size) < self.min_side:
                h, w = image.size
                raise ImageError(f"{image.path}: {w}x{h} is too small; the network needs at least "
                                 f"{self.min_side} px on each side")
        schedule = plan_schedule(*content.size, self.config, self.min_side)
        height, width = schedule[-1][0]
        self._check_memory(height, width, masked)
        budget = memory_budget(self.device)
        for image in styles:
            sh, sw = style_size(self.config, (height, width), image.size, self.min_side)
            need = estimate_style_memory(sh, sw)
            # (In a tiled run a style image larger than a tile is read in tiles too.)
            if budget is not None and need > budget and self.tile_for((height, width), masked) is None:
                raise ResourceError(f"{image.path}: --style-scale {self.config.style_scale:g} makes it {sw}x{sh}, "
                                    f"whose pass needs about {gigabytes(need)} but {self.device} has "
                                    f"{gigabytes(budget)} free; lower --style-scale")
        return schedule

    def _check_memory(self, height: int, width: int, masked: bool) -> None:
        """Raise if a run at height x width (``masked``: with a --mask) fits in memory neither
        whole nor in tiles, or if --tile's tiles would not fit."""
        budget, tile = memory_budget(self.device), self.tile_for((height, width), masked)
        if tile is None:
            need = estimate_memory(self.arch, self.config, height, width, masked)
        else:
            need = estimate_tiled_memory(self.arch, self.config, height, width, tile, masked)
        if budget is None or need <= budget:
            return
        smallest = estimate_tiled_memory(self.arch, self.config, height, width, MIN_ITERATIVE_TILE, masked)
        if tile is not None and self.config.tile and smallest <= budget:
            raise ResourceError(f"a {width}x{height} iterative run in tiles of {tile} px needs about "
                                f"{gigabytes(need)} but {self.device} has {gigabytes(budget)} free; lower --tile "
                                "(or leave it out: the largest tile that fits is chosen)")
        tiled = self.config.tile != 0  # but not even the smallest tiles fit
        if tiled:
            need = smallest
        fits = largest_fitting_size(self.arch, self.config, height, width, budget, masked, tiled)
        how = f" in tiles of {MIN_ITERATIVE_TILE} px" if tiled else ""
        raise ResourceError(f"a {width}x{height} iterative run needs about {gigabytes(need)}{how} but "
                            f"{self.device} has {gigabytes(budget)} free; use --size {fits // 16 * 16} or less, "
                            "or a trained --model (tiled, any size)")

    def run(self, content: LoadedImage, styles: list[LoadedImage], on_progress: ProgressFn | None = None,
            on_snapshot=None, init: LoadedImage | None = None, mask: torch.Tensor | None = None) -> Result:
        return run_iterative(content.rgb, [s.rgb for s in styles], self.config, self.extractor,
                             on_progress=on_progress, on_snapshot=on_snapshot, cache=self.cache,
                             init=None if init is None else init.rgb, mask=mask,
                             tile=self.tile_for(self._size(content), mask is not None))

    def _size(self, content: LoadedImage) -> tuple[int, int]:
        """The size of a run's largest scale."""
        return plan_schedule(*content.size, self.config, self.min_side)[-1][0]

    def run_frame(self, content: LoadedImage, styles: list[LoadedImage], previous: Frame | None,
                  on_progress: ProgressFn | None = None,
                  mask: torch.Tensor | None = None) -> tuple[Result, tuple[float, float] | None]:
        """A video frame (--init previous): from the ``previous`` frame's result moved onto it
        along the optical flow (stylize.motion.carry), at full size only, and held to it where
        the flow holds by --temporal-weight; a first frame, or the first after a cut, from its
        photo as ``run`` would, its full-size scale FIRST_FRAME_ITERATIONS times as long.
        Returns the result and the camera's shift (None: it started from its photo)."""
        moved = None
        schedule = plan_schedule(*content.size, self.config, self.min_side)
        size = schedule[-1][0]  # the motion is in its pixels
        # (A previous result of another size: the batch before was run with another --size.)
        if previous is not None and previous.photo.shape == content.rgb.shape and previous.result.shape[-2:] == size:
            before, after = resize(previous.photo, size), resize(content.rgb, size)
            moved = follow(before, after)
        if moved is None:  # a sequence's first frame, or the first after a cut (FIRST_FRAME_ITERATIONS)
            longer = tuple(n for _, n in schedule[:-1]) + (schedule[-1][1] * FIRST_FRAME_ITERATIONS,)
            return run_iterative(content.rgb, [s.rgb for s in styles], replace(self.config, iterations=longer),
                                 self.extractor, on_progress=on_progress, cache=self.cache, mask=mask,
                                 tile=self.tile_for(size, mask is not None)), None
        weight = self.config.temporal_weight
        # On the run's device: on a GPU the flows take a fraction of the CPU's seconds.
        carried = carry(*(t.to(self.device) for t in (previous.result, before, after)), moved, trust=weight > 0,
                        mask=None if previous.mask is None else previous.mask.to(self.device))
        temporal = None if carried.trusted is None else Temporal(carried.image, carried.trusted, weight)
        result = run_iterative(content.rgb, [s.rgb for s in styles], self.config, self.extractor,
                               on_progress=on_progress, cache=self.cache, init=carried.image, mask=mask,
                               full_size_only=True, tile=self.tile_for(size, mask is not None), temporal=temporal)
        return result, moved


@dataclass(frozen=True)
class Frame:
    """A video's frame as the next one starts from it (--init previous): its photo, its result and
    its --mask (None: the style everywhere; where it kept the photo, the next frame is not held to
    it, see motion.carry)."""

    photo: torch.Tensor  # [1,3,H,W] as read
    result: torch.Tensor  # [1,3,h,w] at the run's size
    mask: torch.Tensor | None = None  # [1,1,H',W'] of the photo's proportions, 1: the style's


def _check_strength(strength: float) -> None:
    if not 0 < strength <= 1:
        raise InputError(f"--strength must be above 0 and at most 1 (the network's output as it is), got {strength}")


class Fast:
    """A trained network on its device, with the run's --size, --preserve-color, --tile and --strength;
    ``cuda_graph``: on CUDA, inputs of one size replay a recorded pass (cudagraph.SameShapeReplay);
    ``temporal_weight`` above 0: an animation's frames are each held to the result before them
    (``run_frame``), and with ``frames`` (--init previous) so are a batch's photos, a video's frames."""

    def __init__(self, model: Path | str, device: str, size: int | None = None, keep_color: bool = False,
                 tile: int | None = None, half: bool | None = None, cuda_graph: bool = True,
                 strength: float = 1.0, temporal_weight: float = 0.0, frames: bool = False) -> None:
        _check_strength(strength)
        check_temporal_weight(temporal_weight)
        if size is not None and size < 16:
            raise ImageError(f"--size must be at least 16 pixels, got {size}")
        if tile is not None and tile != 0 and tile < MIN_TILE:
            raise ImageError(f"--tile must be 0 (never tile) or at least {MIN_TILE} pixels, got {tile}")
        self.device = resolve_device(device)
        make_deterministic(self.device)
        self.exported: ExportedModel | None = None
        if is_exported(Path(model)):
            if tile:
                raise ImageError("--tile works with stylize's own .pt model files; an exported model runs in one pass")
            if half:
                raise ImageError("--half works with stylize's own .pt model files; export a model in the precision "
                                 "you want instead")
            self.exported = load_exported(Path(model), self.device)
            self.path, self.tile = self.exported.path, 0
        else:
            self.model: LoadedModel = load_model(model)
            # What runs: the network with its kernels folded once (the same output, fewer launches);
            # the model's own stays on the CPU, for its configuration.
            self.network = for_inference(self.model.network).to(self.device)
            self.path, self.tile = self.model.path, tile
            # On CUDA a run of same-size inputs (video frames, full batches) replays one recorded
            # pass: a pass of the bundled model is some 50 launches and little arithmetic.
            self._pass = SameShapeReplay(lambda x: infer(self.network, x, self.device, self.half), self.device,
                                         self._replay_fits if cuda_graph else lambda images: False)
        self.size, self.keep_color, self.strength = size, keep_color, strength
        self.temporal_weight, self.frames = temporal_weight, frames
        self.half = not self.exported and resolve_half(self.device, half)

    def varied(self, variant: Variant) -> Fast:
        """The same network with a sweep's ``variant`` of --strength."""
        _check_strength(variant.strength)
        other = copy.copy(self)
        other.strength = variant.strength
        return other

    def recipe(self, content: LoadedImage, mask: Path | None = None, invert_mask: bool = False) -> Recipe:
        """How a run of ``content`` is made."""
        bundled = self.path.parent == bundled_models_dir()
        return model_recipe(self.path, bundled, content.path, self.device, self.size, self.keep_color,
                            self.strength, None if self.exported else self.tile, None if self.exported else self.half,
                            mask, invert_mask, self.temporal_weight if self.frames or content.frames > 1 else 0.0,
                            content.frames > 1)

    def output_size(self, content: LoadedImage) -> tuple[int, int]:
        """(height, width) the photo is stylised at: its own, or --size on its long side (of the
        whole picture: a photo decoded smaller, see ``load``, gives the same size)."""
        return content.size if self.size is None else fit_long_side(*content.full_size, self.size)

    def load(self, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
        """A photo to stylise; with --size, a large JPEG is decoded at the smallest of 1/2, 1/4 and
        1/8 scale that still covers the output (a phone's photo at --size 1024: half its size)."""
        return load_image(path, max_pixels, min_long_side=self.size)

    def input(self, content: LoadedImage) -> torch.Tensor:
        """The photo at the size it is stylised at."""
        return resize(content.rgb, self.output_size(content))

    def check(self, content: LoadedImage, max_pixels: int) -> None:
        """Raise if --size makes the result larger than --max-pixels, or too large for memory even
        in tiles (the photo and its result themselves must fit: --size 60000 tried to allocate 29 GB)."""
        height, width = self.output_size(content)
        if self.size is not None and height * width > max_pixels:
            raise ImageError(f"--size {self.size} makes {width}x{height}, {height * width:,} pixels, more than "
                             f"--max-pixels {max_pixels:,}; lower --size (or raise --max-pixels)")
        need, budget = IMAGE_BYTES_PER_PIXEL * height * width, memory_budget(self.device)
        if budget is not None and need > budget:
            raise ResourceError(f"a {width}x{height} result needs about {gigabytes(need)} for the images alone but "
                                f"{self.device} has {gigabytes(budget)} free; lower --size")

    def tile_for(self, height: int, width: int, batch: int = 1) -> int | None:
        """The tile size for an image (None: one pass). Tiles when asked, or when one pass would
        not fit in half the free memory (the rest is for the image, result and system)."""
        if self.tile == 0:
            return None
        if self.tile is not None:
            return self.tile if max(height, width) > self.tile else None
        budget = memory_budget(self.device)
        if budget is None or batch * estimate_bytes(self.model.network, height, width) <= budget // 2:
            return None
        return max(MIN_TILE, min(1024, largest_fitting_side(self.model.network, budget // 2)) // STRIDE * STRIDE)

    def run(self, images: list[torch.Tensor],
            on_tile: Callable[[TileProgress], None] | None = None) -> list[torch.Tensor]:
        """Stylise same-size images in one pass, or one by one in tiles when they are too large
        (``on_tile``: called after each tile)."""
        height, width = images[0].shape[-2:]
        if self.exported is not None:
            results = list(self.exported(torch.cat(images)).split(1))
        elif len(images) > 1 and self.tile_for(height, width, len(images)) is None:
            results = list(self._stylize(torch.cat(images)).split(1))
        else:
            results = [self._one(image, on_tile) for image in images]
        if self.keep_color:
            results = [preserve_color(r, i) for r, i in zip(results, images)]
        if self.strength < 1:
            # As a photo app's intensity slider: the result over the photo, partly transparent.
            results = [torch.lerp(i, r, self.strength) for r, i in zip(results, images)]
        return results

    def run_frame(self, content: LoadedImage, previous: Frame | None,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[float, float] | None]:
        """A video frame: ``run``'s result held to the ``previous`` frame's result (as written: its
        mask applied) moved onto it along the optical flow, by --temporal-weight (motion.hold), and
        blended over the photo by the frame's ``mask``. Returns the result and the camera's shift
        (None: not held: a first frame, one after a cut, or no --temporal-weight)."""
        photo = self.input(content)
        result = self.run([photo])[0]
        moved = None
        if self.temporal_weight and previous is not None and previous.result.shape == result.shape:
            before = resize(previous.photo, tuple(photo.shape[-2:]))
            moved = follow(before, photo) if previous.photo.shape == content.rgb.shape else None
        if moved is not None:
            # On the run's device: on a GPU the flows take a fraction of the CPU's seconds.
            result = hold(*(t.to(self.device) for t in (result, previous.result, before, photo)), moved,
                          self.temporal_weight, None if previous.mask is None else previous.mask.to(self.device)
                          ).cpu()
        return (result if mask is None else apply_mask(result, photo, mask)), moved

    def animate(self, content: LoadedImage, max_pixels: int, masks: Iterable[torch.Tensor | None],
                on_frame: Callable[[FrameProgress], None] | None = None) -> tuple[AnimationWriter, torch.Tensor]:
        """Stylise every frame of the animation ``content`` (its first, loaded: ``check_animation``
        first), each as ``run_frame`` would after the one before and blended by its mask
        (``animation.frame_masks``); the frames collected for writing, and the last one."""
        frames = AnimationWriter()
        previous = None
        for frame, mask in zip(read_frames(content.path, max_pixels), masks):
            result, _ = self.run_frame(frame.image, previous, mask)
            previous = Frame(frame.image.rgb, result, mask)
            frames.add(result, frame.image.alpha, frame.duration)
            if on_frame:
                on_frame(FrameProgress(len(frames.pictures), content.frames))
        return frames, result

    def _replay_fits(self, images: torch.Tensor) -> bool:
        """Whether a recorded pass, whose memory pool holds a second pass's activations, leaves
        room: at most a quarter of the free memory each (tile_for allows an eager pass half)."""
        budget = memory_budget(self.device)
        need = images.shape[0] * estimate_bytes(self.model.network, *images.shape[-2:])
        return budget is None or need <= budget // 4

    def _stylize(self, image: torch.Tensor) -> torch.Tensor:
        """One pass (replayed where the shape repeats on CUDA); float32 on the CPU."""
        return self._pass(image).float().cpu()

    def _one(self, image: torch.Tensor, on_tile: Callable[[TileProgress], None] | None) -> torch.Tensor:
        height, width = image.shape[-2:]
        tile = self.tile_for(height, width)
        if tile is None:
            return self._stylize(image)
        # Instance-norm statistics come from the whole photo at up to twice the tile's side: close
        # to the full-size statistics, at about four tiles' memory.
        budget = memory_budget(self.device)
        fits = largest_fitting_side(self.model.network, budget // 2, height / width) if budget else tile
        return stylize_tiled(self.network, image, self.device, tile, max(tile, min(2 * tile, fits)), self.half,
                             on_tile)


# ------------------------------------------------------------------------------- single runs

@dataclass(frozen=True)
class Job:
    content: LoadedImage
    styles: list[LoadedImage]
    output: Path
    overwrite: bool
    quality: int
    stylizer: Iterative
    schedule: list[tuple[tuple[int, int], int]]
    init: LoadedImage | None = None
    mask: torch.Tensor | None = None  # [1,1,H,W]: where the result is kept over the photo
    recipe: Recipe | None = None  # written into the output (None: --no-recipe)
    max_pixels: int = DEFAULT_MAX_PIXELS  # an animation's frames are read as the run goes
    run_key: str = ""  # an animation's recipe, however --no-recipe is set: whose frames a resumed run takes
    frame_masks: tuple[Path, bool] | None = None  # an animated --mask (and --invert-mask): a frame for each


@dataclass(frozen=True)
class JobResult:
    image: torch.Tensor
    losses: dict[str, float]
    interrupted: bool
    seconds: float


def snapshot_path(output: Path, scale: int, iteration: int) -> Path:
    """Where ``--save-every`` puts the image of a given scale and iteration."""
    return output.with_name(f"{output.stem}.scale{scale + 1}.iter{iteration:04d}{output.suffix}")


def prepare(content: Path, styles: list[Path], output: Path, config: RunConfig, backbone: BackboneConfig,
            device: str, overwrite: bool, quality: int = DEFAULT_QUALITY,
            max_pixels: int = DEFAULT_MAX_PIXELS, init: Path | None = None, mask: Path | None = None,
            invert_mask: bool = False, recipe: bool = True) -> Job:
    """Validate every input and option, load images and the network; raise StylizeError on any problem.

    ``init``: an image to start from instead of the photo, e.g. the result of an interrupted run;
    ``mask``: where to keep the style (white) and the photo (black), see ``imageio.load_mask``;
    ``recipe``: write how the output was made into it (stylize.recipe)."""
    content_img = load_image(Path(content), max_pixels)
    if content_img.frames > 1 and (init is not None or config.save_every):
        raise InputError(f"{content}: an animation's frames start from their photos and from the frame before; "
                         f"{'--init-image' if init is not None else '--save-every'} is for one picture")
    init_img = load_image(Path(init), max_pixels) if init is not None else None
    mask_img = load_mask(Path(mask), content_img, max_pixels, invert_mask) if mask is not None else None
    style_imgs = [load_image(Path(s), max_pixels) for s in styles]
    check_output(output, overwrite)
    stylizer = Iterative(config, backbone, device)
    schedule = stylizer.check(content_img, style_imgs, masked=mask_img is not None)
    files = [schedule[-1][0]]  # the sizes of what the run writes: the result and --save-every's snapshots
    if config.save_every:
        for index, (size, iterations) in enumerate(schedule):
            for it in range(config.save_every, iterations + 1, config.save_every):
                path = snapshot_path(output, index, it)
                if path.exists() and not overwrite:
                    raise OutputError(f"{path}: exists already; pass --overwrite to replace it")
                files.append(size)
    if content_img.frames > 1:
        check_animation(content_img, output, schedule[-1][0])
        files.append(schedule[-1][0])  # each frame kept until the animation is written (stylize.animated)
    # Room for them all, before minutes of work that a full disk would lose.
    check_space(output.parent, sum(output_bytes(content_img, size) for size in files))
    animated = content_img.frames > 1
    made = stylizer.recipe(content_img, style_imgs, schedule, init_img, mask, invert_mask) if recipe or animated \
        else None
    return Job(content_img, style_imgs, output, overwrite, quality, stylizer, schedule, init_img, mask_img,
               made if recipe else None, max_pixels, made.to_text() if made is not None and animated else "",
               animated_mask(mask, invert_mask, content_img))


def execute(job: Job, on_progress: ProgressFn | None = None) -> JobResult:
    """Run the optimisation and write the output atomically (also after Ctrl-C: the best so far)."""
    start = time.perf_counter()

    def masked(image: torch.Tensor) -> torch.Tensor:
        return image if job.mask is None else apply_mask(image, job.content.rgb, job.mask)

    def recipe(losses: dict[str, float], stopped: str = "") -> str | None:
        return None if job.recipe is None else job.recipe.finished(losses, stopped).to_text()

    def snapshot(image: torch.Tensor, p: Progress) -> None:
        save_result(masked(image), job.content, snapshot_path(job.output, p.scale, p.iteration), True, job.quality,
                    recipe(p.losses, f"a --save-every snapshot: scale {p.scale + 1} of {p.scales}, iteration "
                                     f"{p.iteration} of {p.iterations}"))

    # The mask guides the style loss (the style's statistics within it), then keeps the photo outside it.
    result = job.stylizer.run(job.content, job.styles, on_progress, snapshot, job.init, job.mask)
    image = masked(result.image)
    stopped = "interrupted (Ctrl-C or SIGTERM): the best image so far" if result.interrupted else ""
    save_result(image, job.content, job.output, job.overwrite, job.quality, recipe(result.losses, stopped))
    return JobResult(image, result.losses, result.interrupted, time.perf_counter() - start)


@dataclass(frozen=True)
class FastJob:
    content: LoadedImage
    output: Path
    overwrite: bool
    quality: int
    stylizer: Fast
    mask: torch.Tensor | None = None  # [1,1,H,W]: where the result is kept over the photo
    recipe: Recipe | None = None  # written into the output (None: --no-recipe)
    max_pixels: int = DEFAULT_MAX_PIXELS  # an animation's frames are read as the run goes
    frame_masks: tuple[Path, bool] | None = None  # an animated --mask (and --invert-mask): a frame for each


def prepare_fast(content: Path, stylizer: Fast, output: Path, overwrite: bool, quality: int = DEFAULT_QUALITY,
                 max_pixels: int = DEFAULT_MAX_PIXELS, mask: Path | None = None,
                 invert_mask: bool = False, recipe: bool = True) -> FastJob:
    """Validate the photo, the output and the ``mask`` for a run with a trained network (see ``prepare``)."""
    content_img = stylizer.load(Path(content), max_pixels)
    mask_img = load_mask(Path(mask), content_img, max_pixels, invert_mask) if mask is not None else None
    check_output(output, overwrite)
    stylizer.check(content_img, max_pixels)
    if content_img.frames > 1:
        check_animation(content_img, output, stylizer.output_size(content_img))
    check_space(output.parent, output_bytes(content_img, stylizer.output_size(content_img)))
    made = stylizer.recipe(content_img, mask, invert_mask) if recipe else None
    return FastJob(content_img, output, overwrite, quality, stylizer, mask_img, made, max_pixels,
                   animated_mask(mask, invert_mask, content_img))


def execute_fast(job: FastJob, on_tile: Callable[[TileProgress], None] | None = None,
                 on_frame: Callable[[FrameProgress], None] | None = None) -> JobResult:
    """Stylise in one forward pass (or in tiles, reporting each to ``on_tile``) and write the
    output atomically; an animation frame by frame (reporting each to ``on_frame``)."""
    start = time.perf_counter()
    recipe = None if job.recipe is None else job.recipe.to_text()
    if job.content.frames > 1:
        masks = frame_masks(job.mask, job.frame_masks, job.content, job.max_pixels)
        frames, last = job.stylizer.animate(job.content, job.max_pixels, masks, on_frame)
        frames.write(job.output, job.content, job.max_pixels, job.overwrite, job.quality, recipe)
        return JobResult(last, {}, False, time.perf_counter() - start)
    photo = job.stylizer.input(job.content)
    result = job.stylizer.run([photo], on_tile)[0]
    if job.mask is not None:
        result = apply_mask(result, photo, job.mask)
    save_result(result, job.content, job.output, job.overwrite, job.quality, recipe)
    return JobResult(result, {}, False, time.perf_counter() - start)

