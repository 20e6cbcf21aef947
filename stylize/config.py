"""Run configuration: frozen dataclasses holding every default in one place.

The CLI builds these once from its options and passes them down; core code never reads
globals or the command line.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from stylize.errors import InputError


class Backbone(str, Enum):
    """Feature extractor networks."""

    vgg16 = "vgg16"  # bundled ImageNet VGG-16 (works offline)
    vgg19 = "vgg19"  # torchvision IMAGENET1K_V1, downloaded on first use
    vgg16_imagenet = "vgg16-imagenet"  # torchvision IMAGENET1K_V1, downloaded on first use


class Pooling(str, Enum):
    """Downsampling between the backbone's blocks."""

    max = "max"  # as VGG was trained
    average = "average"  # Gatys et al. 2016: "slightly more appealing results"


class StyleLossKind(str, Enum):
    """Statistic that describes style."""

    gram = "gram"
    meanstd = "meanstd"


class OptimizerKind(str, Enum):
    lbfgs = "lbfgs"
    adam = "adam"


class InitKind(str, Enum):
    content = "content"
    random = "random"
    style = "style"
    # A batch's video frames: each from the previous frame's result, moved onto it along the
    # optical flow (stylize.motion), at full size only; a first frame, or a shot's after a cut,
    # from its photo.
    previous = "previous"


class NormKind(str, Enum):
    """Normalisation in the fast transformer network."""

    instance = "instance"
    batch = "batch"
    ibn = "ibn"  # IBN-Net (Pan et al. 2018): half instance, half batch norm in the early layers


class ImageFormat(str, Enum):
    """Output file formats (--format)."""

    png = "png"
    jpg = "jpg"
    webp = "webp"
    tiff = "tiff"
    gif = "gif"


class ExportFormat(str, Enum):
    """File formats of `stylize export`."""

    onnx = "onnx"
    torchscript = "torchscript"


class Pairing(str, Enum):
    """How content images meet style images in a batch."""

    product = "product"  # every content with every style
    zip = "zip"  # the first content with the first style, the second with the second, ...


LayerWeights = tuple[tuple[str, float], ...]

DEFAULT_CONTENT_LAYERS: LayerWeights = (("relu4_2", 1.0),)
DEFAULT_STYLE_LAYERS: LayerWeights = tuple(
    (name, 1.0) for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
)

# Training's layers are Johnson et al.'s (2016, sec. 4.1), not the iterative run's: content at
# relu2_2, style at relu1_2, relu2_2, relu3_3, relu4_3. A network trained from scratch against
# content at relu4_2 drew the photo's edges as bright outlines over an even hatching; content at
# relu2_2 also holds the photo's finer structure, which keeps the photo and tones the hatching
# down (side by side after 400 and 1000 steps: benchmarks/RESULTS.md).
TRAIN_CONTENT_LAYERS: LayerWeights = (("relu2_2", 1.0),)
TRAIN_STYLE_LAYERS: LayerWeights = tuple((name, 1.0) for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3"))


@dataclass(frozen=True)
class BackboneConfig:
    """Which network gives features, and where its weights come from."""

    name: Backbone | None = None  # None: vgg16, or whatever architecture `weights` holds
    weights: Path | None = None
    pooling: Pooling = Pooling.max
    download_progress: bool = True


@dataclass(frozen=True)
class LossConfig:
    """Weights of J = alpha * J_content + beta * J_style + tv * J_tv, and the layers used."""

    content_weight: float = 1.0
    style_weight: float = 30.0
    tv_weight: float = 1e-2
    content_layers: LayerWeights = DEFAULT_CONTENT_LAYERS
    style_layers: LayerWeights = DEFAULT_STYLE_LAYERS
    style_loss: StyleLossKind = StyleLossKind.gram

    def __post_init__(self) -> None:
        for label, value in (("content weight", self.content_weight), ("style weight", self.style_weight),
                             ("tv weight", self.tv_weight)):
            if not 0 <= value < math.inf:  # also rejects NaN
                raise InputError(f"the {label} must be zero or positive (and finite), got {value}")
        if not self.content_layers and self.content_weight > 0:
            raise InputError("give at least one content layer")
        if not self.style_layers:
            raise InputError("give at least one style layer")


# The iterative run's automatic schedule: coarse to fine, each scale twice the last, the first
# nearest AUTO_FIRST_SCALE px on its long side (2 scales at --size 512, 3 at 1024, 4 at 2048;
# optimize.auto_scale_count), with 100 iterations at each scale but the last and 50 there, each
# scale handing over with the photo's detail (optimize.hand_over). Chosen on the 2-core CPU
# (benchmarks/scales.py, benchmarks/iterative.py, benchmarks/RESULTS.md). At 1024 px three
# scales (256, 512, 1024) ended 8 % lower in objective than the two stylize ran before (512,
# 1024) over three pairs, in 1.05-1.08x the time, and painted the painting's large forms where
# two left finer, busier strokes: a larger --size gives the same picture with more detail. A
# first scale near 128 px lowered the objective further (at 512 px 6 % over eight pairs) but
# by trading the photo for the painting: on the 451 px sample cat the faces dissolved. 200
# iterations at the first of three scales instead of 100 ended higher (0.2 %). At 512 px, in
# bfloat16 (the default on CPUs where it is native: device.resolve_half), 100 + 50 reaches the
# objective of the classic single-scale 500-iteration L-BFGS run in 0.079-0.085 of its time.
AUTO_FIRST_SCALE = 256  # px, the long side the automatic schedule's first scale is nearest
AUTO_ITERATIONS = (100, 50)  # every scale but the last, and the last
# A sequence's frames (--init previous, an animation) each go on from the frame before, so the
# later ones end further optimised than the first, which starts from its photo: the texture kept
# changing over the first frames. The first frame (and the first after a cut) runs its full-size
# scale this many times as long: on 8 frames at 256 px (tubingen x The Starry Night, a pan of 3 px
# a frame) the change between the first two frames fell from 0.031 to 0.021, that of the later
# ones' 0.020, and every frame's objective from 0.97-1.09 to 0.93-0.97 (RESULTS.md).
FIRST_FRAME_ITERATIONS = 4
# A video frame's temporal term (Ruder et al. 2016; stylize.losses.temporal_consistency): the
# squared difference from the previous result moved onto the frame, where the optical flow holds.
# On four clips at 256 px (benchmarks/frames.py: a pan, a still camera, an object crossing, a zoom)
# 100 cut the change from frame to frame by 20-48 % against none (the result only started from),
# at a 0.5-2.8 % higher objective; 300 cut it by 27-64 % at 0.9-6.7 %.
TEMPORAL_WEIGHT = 100.0
# The same term for a trained network's frames (--model with --init previous): each frame's output
# held to the previous result moved onto it, (output + w * moved) / (1 + w) where the flow holds
# (stylize.motion.hold). On the four clips (the bundled starry_night network) 2 cut the change
# from frame to frame 2.4-3.4x against each frame on its own, for 7-11 % less fine detail (part of
# it the camera noise's own texture); 1 cut it 2.0-2.3x (6-8 %), 3 2.8-4.3x (7-13 %); RESULTS.md.
MODEL_TEMPORAL_WEIGHT = 2.0


@dataclass(frozen=True)
class RunConfig:
    """Options of the iterative (Gatys et al.) optimisation."""

    size: int = 512  # long side of the output, pixels
    scales: tuple[int, ...] | int | None = None  # explicit sizes, a number of scales, or None (auto)
    iterations: tuple[int, ...] | None = None  # per scale; one value applies to every scale; None: auto
    optimizer: OptimizerKind = OptimizerKind.lbfgs
    learning_rate: float = 0.02  # Adam only, in pixel units of a [0,1] image
    init: InitKind = InitKind.content
    seed: int = 0
    style_scale: float = 1.0  # style image long side relative to the output's
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None: equal
    preserve_color: bool = False
    match_color: bool = False  # recolour the styles with the photo's colours first (color.match_color)
    save_every: int = 0  # 0: no intermediate images
    half: bool | None = None  # bfloat16 mixed precision (--half/--no-half); None: device.resolve_half
    cuda_graph: bool = True  # on GPUs, replay each step's objective as a CUDA graph (optimize.GRAPH_MAX_PIXELS)
    tile: int | None = None  # --tile: None: tiles only where a run would not fit in memory; 0: never; N: N px
    temporal_weight: float = TEMPORAL_WEIGHT  # video frames (--init previous, animations); 0: none
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.size < 16:
            raise InputError(f"--size must be at least 16 pixels, got {self.size}")
        if self.iterations is not None and any(n < 1 for n in self.iterations):
            raise InputError("--iterations must be positive")
        if isinstance(self.scales, tuple) and max(self.scales) > self.size:
            # Silently dropped, they left the run a scale short of the --iterations listed for it.
            raise InputError(f"--scales {max(self.scales)} is larger than --size {self.size}, the last scale's size; "
                             "raise --size or list only smaller sizes")
        if not 0 < self.style_scale < math.inf:
            raise InputError(f"--style-scale must be positive (and finite), got {self.style_scale}")
        if not 0 < self.learning_rate < math.inf:
            raise InputError(f"--lr must be positive (and finite), got {self.learning_rate}")
        check_temporal_weight(self.temporal_weight)
        if self.save_every < 0:
            raise InputError("--save-every must be zero or positive")
        if self.tile is not None and self.tile != 0 and self.tile < MIN_ITERATIVE_TILE:
            raise InputError(f"--tile must be 0 (never tile) or at least {MIN_ITERATIVE_TILE} pixels, got {self.tile}")
        if self.style_blend is not None:
            if any(not 0 <= w < math.inf for w in self.style_blend) or sum(self.style_blend) <= 0:
                raise InputError("--style-blend weights must be non-negative, finite and not all zero")
        check_seed(self.seed)


# The smallest tile of an iterative run (stylize.tiledloss): below it each tile's margins, which
# make its features exact (73 pixels each side for VGG-16's relu5_1), are most of the work.
MIN_ITERATIVE_TILE = 128

SEED_MAX = 2**32 - 1  # training scales the seed (dataset, trainstep): kept well inside torch's 64 bits


def check_temporal_weight(weight: float) -> None:
    """--temporal-weight's bounds, for either method."""
    if not 0 <= weight < math.inf:
        raise InputError(f"--temporal-weight must be zero or positive (and finite), got {weight}")


def check_seed(seed: int) -> None:
    """A ``--seed`` torch's generators take, however the workflows derive theirs from it."""
    if not 0 <= seed <= SEED_MAX:
        raise InputError(f"--seed must be between 0 and {SEED_MAX}, got {seed}")


def parse_layer_weights(text: str, option: str) -> LayerWeights:
    """Parse ``"relu1_1,relu2_1:0.5"`` into ``(("relu1_1", 1.0), ("relu2_1", 0.5))``."""
    result: list[tuple[str, float]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, weight_text = item.partition(":")
        weight = 1.0
        if weight_text:
            try:
                weight = float(weight_text)
            except ValueError:
                raise InputError(f"{option}: '{weight_text}' is not a number "
                                 "(write layer:weight, e.g. relu1_1:0.5)") from None
            if not 0 <= weight < math.inf:
                raise InputError(f"{option}: layer weights must be zero or positive (and finite), got {weight_text}")
        result.append((name.strip().lower(), weight))
    if not result:
        raise InputError(f"{option}: give at least one layer, e.g. relu4_2")
    return tuple(result)


def format_layer_weights(layers: LayerWeights) -> str:
    """The inverse of parse_layer_weights: ``relu1_1,relu2_1:0.5`` (weights of 1 left out), each
    weight exactly (``number``): what a recipe's command and a model file's record give back."""
    return ",".join(name if weight == 1 else f"{name}:{number(weight)}" for name, weight in layers)


def number(value: float) -> str:
    """A number as a command line takes it back exactly: 30 for 30.0, 0.01, 1e-05."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def parse_numbers(text: str, option: str, kind: type = float) -> tuple:
    """Parse a comma-separated list such as ``"0.7,0.3"`` (``"200,70"`` with ``kind=int``); errors
    name the option and show an example of its kind."""
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        example = "whole numbers like 200,70" if kind is int else "numbers like 0.7,0.3"
        raise InputError(f"{option}: expected comma-separated {example}, got '{text}'") from None
    if not values:
        raise InputError(f"{option}: expected at least one number")
    return values


def parse_scales(text: str) -> tuple[int, ...] | int:
    """``"3"`` means three scales, each twice the last, ending at --size; ``"128,256"`` lists sizes."""
    values = parse_numbers(text, "--scales", int)
    if len(values) == 1 and values[0] < 16:
        if values[0] < 1:
            raise InputError("--scales must be at least 1")
        return values[0]
    if any(v < 16 for v in values):
        raise InputError("--scales: every size must be at least 16 pixels")
    return values


@dataclass(frozen=True)
class TrainConfig:
    """Options of `stylize train` (fast, feed-forward stylisation)."""

    image_size: int = 256  # side of the square training crops
    batch_size: int = 4
    steps: int | None = None  # exactly one of steps / epochs; neither: DEFAULT_TRAIN_STEPS
    epochs: float | None = None
    learning_rate: float = 1e-3
    style_size: int | None = None  # long side of the style image; None: image_size
    checkpoint_every: int = 500
    seed: int = 0
    workers: int | None = None  # background data-loading processes; None: 0 on the CPU, up to 8 on a GPU
    half: bool | None = None  # mixed precision (--half/--no-half); None: device.resolve_half
    # Weight of the shift-consistency term (stylize.losses.shift_consistency): each step also
    # stylises its crops shifted by 1-3 px and asks for the shifted output. Without it, bundled
    # models drew on the 4-px lattice of the network's upsampled maps (shipwreck a mosaic,
    # starry_night a diagonal weave: lattice power 20-38, photos about 1); with 400, 1.6-3.6 at a
    # 9-28 % higher style loss; 100 left a fine striation (benchmarks/RESULTS.md). Model files
    # from before it were trained with 0.
    shift_weight: float = 400.0
    cuda_graph: bool = True  # on GPUs, replay each step as a CUDA graph (stylize.trainstep)
    # A network trained from scratch needs a much lower style weight than the iterative method,
    # which starts from the photo: at 30 (the run default) trained networks lost the photo. With
    # Johnson et al.'s layers, 5 kept it after 1000 steps and came nearer the paintings than 3.
    loss: LossConfig = field(default_factory=lambda: LossConfig(
        style_weight=5.0, tv_weight=1e-2, content_layers=TRAIN_CONTENT_LAYERS, style_layers=TRAIN_STYLE_LAYERS))

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise InputError(f"--image-size must be at least 32, got {self.image_size}")
        if self.style_size is not None and self.style_size < 32:
            raise InputError(f"--style-size must be at least 32, got {self.style_size}")
        if self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if self.steps is not None and self.epochs is not None:
            raise InputError("give --steps or --epochs, not both")
        if (self.steps is not None and self.steps < 1) or (self.epochs is not None and not 0 < self.epochs < math.inf):
            raise InputError("--steps and --epochs must be positive (and finite)")
        if not 0 < self.learning_rate < math.inf:
            raise InputError(f"--lr must be positive (and finite), got {self.learning_rate}")
        if self.checkpoint_every < 1:
            raise InputError("--checkpoint-every must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise InputError("--workers must be zero or positive")
        if not 0 <= self.shift_weight < math.inf:
            raise InputError(f"--shift-weight must be zero or positive (and finite), got {self.shift_weight}")
        check_seed(self.seed)

    def total_steps(self, dataset_size: int, processes: int = 1) -> int:
        """Steps to train; an epoch takes fewer steps when several processes share each step."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * dataset_size / (self.batch_size * processes)))
        return DEFAULT_TRAIN_STEPS


DEFAULT_TRAIN_STEPS = 2000


DEFAULT_TEMPLATE = "{content}_x_{style}.{ext}"
VARIANT_TEMPLATE = "{content}_x_{style}_{variant}.{ext}"  # a sweep (several --style-weight values, ...)


@dataclass(frozen=True)
class Variant:
    """One setting of a sweep: `stylize run` with --style-weight 10,30,100 (or several
    --style-scale values; with --model, several --strength values) makes every photo with every
    style once per value, side by side.

    ``label`` names the options that vary and their values here (``sw100``, ``sw100_ss0.5``,
    ``st0.5``): the {variant} of output names and the contact sheet's columns; "" when nothing
    varies."""

    style_weight: float
    style_scale: float
    strength: float = 1.0  # a trained network's (stylize.job.Fast)
    label: str = ""

    def apply(self, config: RunConfig) -> RunConfig:
        """``config`` with this variant's values."""
        return replace(config, style_scale=self.style_scale, loss=replace(config.loss, style_weight=self.style_weight))


def sweep(style_weights: tuple[float, ...], style_scales: tuple[float, ...],
          strengths: tuple[float, ...] = (1.0,)) -> list[Variant]:
    """Every combination of the values given (each list in its order, a value given twice once)."""
    lists = [tuple(dict.fromkeys(values)) for values in (style_weights, style_scales, strengths)]

    def label(values: tuple[float, ...]) -> str:
        return "_".join(f"{prefix}{number(value)}" for prefix, value, given in zip(("sw", "ss", "st"), values, lists)
                        if len(given) > 1)

    return [Variant(*values, label=label(values)) for values in itertools.product(*lists)]


@dataclass(frozen=True)
class OutputConfig:
    """How results are written and how a batch of them is run (`stylize run` on many files)."""

    template: str = DEFAULT_TEMPLATE  # --name: {content}, {style}, {variant}, {dir}, {ext}
    format: ImageFormat | None = None  # None: from -o's suffix, else png
    quality: int = 95  # JPEG and WebP
    pairs: Pairing = Pairing.product
    recursive: bool = False
    overwrite: bool = False
    # Refuse decompression bombs (a header claiming 100k x 100k pixels) before decoding anything.
    # 150 megapixels is a 15000x10000 photo; --max-pixels raises the limit.
    max_pixels: int = 150_000_000
    batch_size: int = 1  # photos per forward pass of a trained network
    tile: int | None = None  # trained networks: None: tile when needed; 0: never; N: tiles of N px
    recipe: bool = True  # write how each output was made into it (stylize.recipe); --no-recipe

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise InputError(f"--quality must be between 1 and 100, got {self.quality}")
        if self.max_pixels < 1:
            raise InputError("--max-pixels must be positive")
        if self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if self.tile is not None and self.tile < 0:
            raise InputError("--tile must be 0 (never tile) or a tile size in pixels")
