"""The feed-forward transformer network of Johnson et al. (2016), with Ulyanov et al.'s
instance normalisation (2017) by default.

Reflection padding everywhere (no dark borders), strided convolutions down, residual blocks,
then bilinear upsampling followed by a convolution instead of transposed convolutions
(Odena et al. 2016: fewer checkerboard artefacts; with nearest-neighbour upsampling, as older
models have, trained networks still drew a hatching on the upsampled maps' lattice, see
``TransformerConfig.upsample``). Input and output are RGB in [0,1]; any size works (the input
is padded to a multiple of 4 and the output cropped back).

Two layers are computed differently from the way they are drawn, with the same result and
parameters: upsampling + convolution at the input's resolution (``bilinear_upsample_conv3x3``,
``upsample_conv3x3``) and the classic 9x9 output convolution on 2x2 pixel blocks
(``BlockConv2d``). On a CPU these full-size layers were most of the classic network's time;
this way its forward+backward pass is about 1.2x faster than the recipe's (benchmarks/recipe.py
has the plain version the benchmarks compare against).

State-dict key names are a file format (model files store them): keep them stable.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylize.config import NormKind
from stylize.deterministic import ReflectionPad2d, pad2d, repeat_each
from stylize.device import autocast
from stylize.errors import InputError


UPSAMPLE_MODES = ("bilinear", "nearest")
OUTPUT_MODES = ("sigmoid", "clamp")  # "clamp": networks trained on 0-255 pixels (stylize.foreign)


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture; saved in model files so they rebuild themselves."""

    width: int = 32  # channels of the first layer; then 2x and 4x
    blocks: int = 5  # residual blocks
    norm: NormKind = NormKind.instance
    # 2: the network works on 2x2 pixel blocks (pixel unshuffle in): no layer at full
    # resolution; 1: Johnson et al.'s layout.
    shuffle: int = 1
    # How a shuffled network returns to full resolution: "upsample" (nearest 2x + 3x3
    # convolution, computed at half resolution; a flat area stays flat) or "subpixel" (Shi et
    # al.'s sub-pixel convolution: each pixel of a 2x2 block has its own weights, which trained
    # a visible 2-pixel grid into flat areas; models from before this field have it).
    head: str = "upsample"
    # How every upsampling layer enlarges its input before its 3x3 convolution: "bilinear" or
    # "nearest" (models from before this field). With nearest-neighbour copies the four output
    # phases of a 2x2 block see their input through four different sums of the kernel's taps, and
    # trained models drew a regular hatching at the period of the upsampled map (4 px for the
    # bundled ones: 4-36 times the power of the neighbouring frequencies, benchmarks/RESULTS.md).
    # Bilinear alone still let trained networks place texture on that lattice; training's
    # shift-consistency term (TrainConfig.shift_weight) is what took it out.
    upsample: str = "bilinear"
    # How the output becomes RGB in [0,1]: "sigmoid" (stylize's), or "clamp" for networks of
    # pytorch/examples' fast_neural_style, whose last layer's values are clipped (stylize.foreign).
    output: str = "sigmoid"

    def __post_init__(self) -> None:
        if self.width < 4 or self.width > 256:
            raise InputError(f"--width must be between 4 and 256, got {self.width}")
        if self.blocks < 0 or self.blocks > 32:
            raise InputError(f"--blocks must be between 0 and 32, got {self.blocks}")
        if self.shuffle not in (1, 2):
            raise InputError(f"--shuffle must be 1 or 2, got {self.shuffle}")
        if self.head not in ("upsample", "subpixel"):
            raise InputError(f"the network's head must be upsample or subpixel, got {self.head!r}")
        if self.upsample not in UPSAMPLE_MODES:
            raise InputError(f"the network's upsampling must be bilinear or nearest, got {self.upsample!r}")
        if self.output not in OUTPUT_MODES:
            raise InputError(f"the network's output must be sigmoid or clamp, got {self.output!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "norm": self.norm.value}

    def options(self) -> str:
        """The `stylize train` options that build this network."""
        return f"--width {self.width} --blocks {self.blocks} --norm {self.norm.value} --shuffle {self.shuffle}"

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        # Files from before `shuffle` existed: 1; shuffled ones from before `head`: sub-pixel;
        # from before `upsample`: nearest.
        shuffle = int(data.get("shuffle", 1))
        return cls(width=int(data["width"]), blocks=int(data["blocks"]), norm=NormKind(data["norm"]),
                   shuffle=shuffle, head=str(data.get("head", "subpixel" if shuffle == 2 else "upsample")),
                   upsample=str(data.get("upsample", "nearest")), output=str(data.get("output", "sigmoid")))


STRIDE = 4  # total downsampling in both layouts: inputs are padded to a multiple of it
# At inference the photo gets a reflected margin of this many pixels, cropped off again, so that
# its border pixels are computed as interior ones. Without it, the network's own padding at the
# edges of its maps showed through as a band of odd strokes along the photo's edges (a stripe
# 4-8 px in from the right edge of some models): measured against the same model given a 64 px
# margin, the 12 px band along the edges differed by 10-15 of 255 levels and the interior by
# 2-3; with 16 px, the edges by no more than the interior (benchmarks/RESULTS.md). Johnson et
# al. (2016, supplementary) pad their input by 40 px for the same reason. Training needs none.
EDGE_MARGIN = 16
MIN_SIDE = 2 * EDGE_MARGIN  # smaller inputs are first padded up to this (the margin must be smaller)
CLASSIC = TransformerConfig(width=32, blocks=5)  # Johnson et al.'s 32-64-128, 5 residual blocks
SMALL = TransformerConfig(width=16, blocks=3)  # the faster preset
# The bundled models' network: SMALL's widths on 2x2 pixel blocks, 9x faster than CLASSIC at
# 1024x768 on a 2-core CPU because no layer works at full resolution (benchmarks/fast.py).
FAST = TransformerConfig(width=16, blocks=3, shuffle=2)


class InstanceNorm(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(channels, affine=True)``, the same state-dict keys; in float32 on the
    CPU or CUDA computed as a group norm of one group per channel, the same normalisation (equal
    to rounding). torch's instance norm repeats its weight and bias for every image and runs
    batch norm over the images' channels: seven operations a layer forward and backward where
    group norm takes two. A GPU at stylize's sizes waits on launching them
    (benchmarks/launches.py), and on a CPU group norm's kernel is the faster: the bundled model's
    float32 pass at 1024x768 1.14x as fast (benchmarks/RESULTS.md)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if _group_norm_wanted(x):
                return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               self.training or not self.track_running_stats,
                               self.momentum if self.momentum is not None else 0.0, self.eps)


def _group_norm_wanted(x: torch.Tensor) -> bool:
    """float32 on the CPU or CUDA, outside autocast. Under autocast (--half) instance norm runs in
    the half type, where group norm is cast to float32 (two more casts a layer, and on the CPU
    no faster in bfloat16); so a model trained in bfloat16 on the CPU, as the bundled ones are,
    trains exactly as before. Other devices keep torch's instance norm (not measured there), and
    so does an ONNX export."""
    return (x.device.type in ("cpu", "cuda") and x.dtype == torch.float32
            and not torch.is_autocast_enabled(x.device.type)
            # ONNX has an instance norm (one node a layer); group norm exports as four
            and not torch.onnx.is_in_onnx_export())


class IBNorm(nn.Module):
    """Instance norm on the first half of the channels, batch norm on the rest (IBN-Net's IBN-a)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.instance = InstanceNorm(self.split)
        self.batch = nn.BatchNorm2d(channels - self.split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, : self.split], x[:, self.split:]
        return torch.cat([self.instance(a.contiguous()), self.batch(b.contiguous())], dim=1)


def make_norm(kind: NormKind, channels: int, early: bool) -> nn.Module:
    """The normalisation layer; IBN mixes only in the early layers, later layers use instance norm."""
    if kind is NormKind.batch:
        return nn.BatchNorm2d(channels)
    if kind is NormKind.ibn and early:
        return IBNorm(channels)
    return InstanceNorm(channels)


def block_matrix(kernel: int) -> torch.Tensor:
    """``[k^2, 16 n^2]``, n = (k+1)/2: a k x k kernel's taps (row-major) to its taps on 2x2 pixel
    blocks, one-hot. Output phase p of block row I reads input row 2(I+A)+r, i.e. tap 2A+r-p;
    taps outside the kernel are zero. Columns in (p, r, A) x (q, s, B) order."""
    n = (kernel + 1) // 2
    select = torch.zeros(kernel, 2, 2, n)  # [tap, p, r, A]
    for p in range(2):
        for r in range(2):
            for a in range(n):
                if 0 <= 2 * a + r - p < kernel:
                    select[2 * a + r - p, p, r, a] = 1.0
    select = select.reshape(kernel, 4 * n)
    return torch.einsum("yi,xj->yxij", select, select).reshape(kernel * kernel, 16 * n * n)


def fold_block(weight: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``[O,C,k,k] -> [4O,4C,n,n]``: the weights of the same convolution on 2x2 pixel blocks
    (pixel_unshuffle's channel order c*4 + r*2 + s in, pixel_shuffle's o*4 + p*2 + q out), as
    one product with ``block_matrix``: exact (each entry selects one tap), a few operations
    forward and backward, and its gradient sums the taps read twice in a fixed order (indexing's
    backward on a GPU adds them with atomics, in any order)."""
    o, c, k = weight.shape[0], weight.shape[1], weight.shape[2]
    n = (k + 1) // 2
    with torch.autocast(weight.device.type, enabled=False):  # exact: float32 under --half too
        blocks = (weight.reshape(o * c, k * k) @ matrix).view(o, c, 2, 2, n, 2, 2, n)  # [o,c,p,r,A,q,s,B]
    return blocks.permute(0, 2, 5, 1, 3, 6, 4, 7).reshape(4 * o, 4 * c, n, n)


class BlockConv2d(nn.Conv2d):
    """A stride-1 convolution with an odd kernel (no padding of its own), computed on 2x2 pixel
    blocks: the same function, parameters and state-dict keys as ``nn.Conv2d``. With few output
    channels (the classic network's 9x9 output layer has 3) the plain convolution is a thin
    matrix product, about 40 GFLOP/s on a 2-core CPU; on blocks (32 -> 3 at 9x9 becomes 128 -> 12
    at 5x5, 1.23x the multiply-adds) it runs three times faster: forward+backward for 4 crops of
    256 px, 111 against 338 ms.
    Inputs need an even height and width (TransformerNet's maps always have them)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        if kernel % 2 == 0:
            raise ValueError("BlockConv2d needs an odd kernel")
        super().__init__(cin, cout, kernel)
        self.register_buffer("fold", block_matrix(kernel), persistent=False)  # a constant (see UpsampleConv2d)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias of the convolution on blocks."""
        return fold_block(self.weight, self.fold), None if self.bias is None else repeat_each(self.bias, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.folded()
        return block_conv(x, weight, bias)


def block_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A ``BlockConv2d`` with its weights already folded onto blocks."""
    return F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(x, 2), weight, bias), 2)


# How each output phase of a 2x upsampling sees a 3-tap kernel (a0, a1, a2) along one axis:
# [phase][the phase's tap] = its weights of a0, a1, a2.
# Nearest: every input pixel appears twice; phase 0 reads input pixels (i-1, i) with taps
# (a0, a1+a2), phase 1 reads (i, i+1) with (a0+a1, a2).
NEAREST_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
# Bilinear: pixels 2i and 2i+1 are x[i-1]/4 + 3x[i]/4 and 3x[i]/4 + x[i+1]/4, so both phases read
# input pixels (i-1, i, i+1); each phase's taps sum to the kernel's sum (a flat map stays flat).
BILINEAR_TAPS = (((0.75, 0.25, 0.0), (0.25, 0.75, 0.75), (0.0, 0.0, 0.25)),
                 ((0.25, 0.0, 0.0), (0.75, 0.75, 0.25), (0.0, 0.25, 0.75)))


def phase_matrix(bilinear: bool) -> torch.Tensor:
    """``[9, 4 n^2]``: a 3x3 kernel's taps (row-major) to the n x n kernels of the four output
    phases (p, q) of a 2x upsampling followed by it; n = 3 (bilinear) or 2 (nearest)."""
    taps = torch.tensor(BILINEAR_TAPS if bilinear else NEAREST_TAPS)  # [phase, n, 3]
    n = taps.shape[1]
    return torch.einsum("pik,qjl->klpqij", taps, taps).reshape(9, 4 * n * n)


def fold_phases(weight: torch.Tensor, bias: torch.Tensor | None, matrix: torch.Tensor,
                bilinear: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An ``[O,C,3,3]`` kernel as the kernels of its four output phases, ``[4O,C,n,n]``, and its
    bias repeated to match: bilinear in pixel_shuffle's order (output channel o's four phases
    side by side), nearest in (p, q, o) order, as ``nearest_phase_conv`` slices them. One matrix
    product with ``phase_matrix``: 23-27 operations forward and backward (on a GPU, launches)
    where folding tap by tap took 73-175 (tests/test_transformer.py)."""
    o, c = weight.shape[0], weight.shape[1]
    n = 3 if bilinear else 2
    with torch.autocast(weight.device.type, enabled=False):  # in float32 under --half too
        folded = (weight.reshape(o * c, 9) @ matrix).view(o, c, 2, 2, n, n)
    if bilinear:
        return (folded.permute(0, 2, 3, 1, 4, 5).reshape(4 * o, c, n, n),
                None if bias is None else repeat_each(bias, 4))
    return folded.permute(2, 3, 0, 1, 4, 5).reshape(4 * o, c, n, n), None if bias is None else bias.repeat(4)


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Nearest 2x upsampling, reflection pad 1 and a 3x3 convolution, computed at the input's
    resolution: each output phase is a 2x2 convolution of the input (4/9 of the multiply-adds,
    and no upsampled map). Reflecting the upsampled map by one pixel repeats its border pixel,
    which is replicate padding of the input. Same result as the plain layers within float error."""
    return nearest_phase_conv(x, *fold_phases(weight, bias, phase_matrix(False).to(weight), False))


def nearest_phase_conv(x: torch.Tensor, phases: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``upsample_conv3x3`` with its kernel already folded (``fold_phases``)."""
    b, h, w, o = x.shape[0], x.shape[2], x.shape[3], phases.shape[0] // 4
    y = F.conv2d(pad2d(x, 1, "replicate"), phases, bias)  # [B, (p,q,o), H+1, W+1]
    y00, y01 = y[:, :o, :h, :w], y[:, o:2 * o, :h, 1:]
    y10, y11 = y[:, 2 * o:3 * o, 1:, :w], y[:, 3 * o:, 1:, 1:]
    rows_even, rows_odd = torch.stack([y00, y01], -1), torch.stack([y10, y11], -1)  # [B,O,H,W,2]
    return torch.stack([rows_even, rows_odd], 3).reshape(b, o, 2 * h, 2 * w)


def bilinear_upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Bilinear 2x upsampling and a 3x3 convolution, computed at the input's resolution: each
    output phase is a 3x3 convolution of the input (as many multiply-adds as the plain layers,
    and no upsampled map). At the borders the input is replicated by one pixel before it is
    upsampled: the same as ``conv2d(interpolate(pad(x, 1, replicate), 2x, bilinear)`` cropped
    to the convolution's border (within float error; tests/test_transformer.py)."""
    return bilinear_phase_conv(x, *fold_phases(weight, bias, phase_matrix(True).to(weight), True))


def bilinear_phase_conv(x: torch.Tensor, phases: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``bilinear_upsample_conv3x3`` with its kernel already folded (``fold_phases``)."""
    return F.pixel_shuffle(F.conv2d(pad2d(x, 1, "replicate"), phases, bias), 2)


class UpsampleConv2d(nn.Conv2d):
    """2x upsampling (bilinear, or nearest for older models) and a 3x3 convolution, computed at the
    input's resolution (``bilinear_upsample_conv3x3``, ``upsample_conv3x3``): an ``nn.Conv2d``'s
    parameters and state-dict keys."""

    def __init__(self, cin: int, cout: int, mode: str = "bilinear") -> None:
        super().__init__(cin, cout, 3)
        self.bilinear = mode == "bilinear"  # a plain bool for TorchScript
        # A constant that moves with the module (built at each call, it would be copied to the
        # GPU at each step, and that copy waits for the device); not in the state dict.
        self.register_buffer("fold", phase_matrix(self.bilinear), persistent=False)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The phase kernels and bias of the convolution at the input's resolution."""
        return fold_phases(self.weight, self.bias, self.fold, self.bilinear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases, bias = self.folded()
        return bilinear_phase_conv(x, phases, bias) if self.bilinear else nearest_phase_conv(x, phases, bias)


class ConvNormAct(nn.Module):
    """Reflection pad, convolution, normalisation, optional ReLU; with ``upsample=2`` (3x3
    kernels only) 2x upsampling first (``mode``), an ``UpsampleConv2d``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: NormKind = NormKind.instance,
                 early: bool = False, relu: bool = True, upsample: int = 1, mode: str = "bilinear") -> None:
        super().__init__()
        if upsample not in (1, 2) or (upsample == 2 and (kernel != 3 or stride != 1)):
            raise ValueError("ConvNormAct upsamples 2x before 3x3 stride-1 convolutions only")
        if upsample == 2:  # UpsampleConv2d pads inside, at the input's resolution
            self.pad, self.conv = nn.Identity(), UpsampleConv2d(cin, cout, mode)
        else:
            self.pad, self.conv = ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)
        self.norm = make_norm(norm, cout, early)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(self.pad(x)))
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: NormKind, early: bool) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, norm=norm, early=early)
        self.conv2 = ConvNormAct(channels, channels, 3, norm=norm, early=early, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


def pad_to_min_side(x: torch.Tensor, side: int) -> torch.Tensor:
    """Replicate the last rows/columns of a smaller image up to ``side`` pixels (reflection could
    not: its pad must be smaller than the image)."""
    h, w = x.shape[-2], x.shape[-1]
    if h < side or w < side:
        x = F.pad(x, (0, max(0, side - w), 0, max(0, side - h)), mode="replicate")
    return x


class TransformerNet(nn.Module):
    """Image-to-image network: ``[B,3,H,W]`` in [0,1] to the same size in [0,1]."""

    def __init__(self, config: TransformerConfig = CLASSIC) -> None:
        super().__init__()
        self.config = config
        w, norm, s = config.width, config.norm, config.shuffle
        # Plain ints for forward(), which TorchScript compiles (it cannot read the dataclass).
        self.stride, self.shuffle, self.min_side = STRIDE, s, MIN_SIDE  # min_side: a multiple of stride
        self.margin = EDGE_MARGIN
        self.sigmoid = config.output == "sigmoid"
        # Shuffled, the first layer already works at half resolution, so one strided layer less
        # reaches the residual blocks' quarter resolution (a version with them at 1/8 ran twice as
        # fast but lost the photo in training). Johnson et al.'s 9x9 outer convolutions see 9 px;
        # at half resolution 3x3 ones see 6, and cost 1/36 as much (the full-resolution layers
        # dominated the classic network's time).
        outer = 9 if s == 1 else 3
        self.encoder = nn.Sequential(
            ConvNormAct(3 * s * s, w, outer, norm=norm, early=True),
            ConvNormAct(w, 2 * w, 3, stride=2, norm=norm, early=True),
            ConvNormAct(2 * w, 4 * w, 3, stride=2 // s, norm=norm, early=True),
        )
        # IBN-Net puts instance norm where appearance is encoded: the encoder and the first half
        # of the residual blocks; deeper layers keep batch statistics for content.
        self.residuals = nn.Sequential(*(ResidualBlock(4 * w, norm, early=i < config.blocks // 2)
                                         for i in range(config.blocks)))
        mode = config.upsample
        self.decoder = nn.Sequential(
            ConvNormAct(4 * w, 2 * w, 3, norm=norm, upsample=2 // s, mode=mode),
            ConvNormAct(2 * w, w, 3, norm=norm, upsample=2, mode=mode),
        )
        # Johnson et al.'s 9x9 output layer on 2x2 blocks (its padded map is even-sized, as
        # BlockConv2d needs). The shuffled layout upsamples (Odena et al.) into RGB; its older
        # sub-pixel head gives 2x2 blocks of 12 channels to pixel_shuffle, whose four phases
        # each learn their own weights (Aitken et al. 2017 on the resulting checkerboard).
        self.shuffle_out = s if config.head == "subpixel" else 1
        if s == 1:
            self.head = nn.Sequential(ReflectionPad2d(outer // 2), BlockConv2d(w, 3, outer))
        elif config.head == "subpixel":
            self.head = nn.Sequential(ReflectionPad2d(outer // 2), nn.Conv2d(w, 3 * s * s, outer))
        else:
            # It pads inside; the identity keeps its keys at head.1.*, as in the other heads.
            self.head = nn.Sequential(nn.Identity(), UpsampleConv2d(w, 3, mode))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2], image.shape[-1]
        stride, s, side = self.stride, self.shuffle, self.min_side
        x = image - 0.5
        # Pad to at least `side`, so that the margin and every reflection pad inside the network
        # are smaller than the map they pad; then the margin (EDGE_MARGIN, at inference), and to a
        # multiple of the stride; crop back after. The stride's pad runs even when it adds nothing,
        # so that an exported graph pads whatever size it is given.
        x = pad_to_min_side(x, side)
        m = 0 if self.training else self.margin  # EDGE_MARGIN: inference only
        if m > 0:
            x = F.pad(x, (m, m, m, m), mode="reflect")
        x = F.pad(x, (0, (-x.shape[-1]) % stride, 0, (-x.shape[-2]) % stride), mode="reflect")
        if s > 1:
            x = F.pixel_unshuffle(x, s)
        x = self.head(self.decoder(self.residuals(self.encoder(x))))
        if self.shuffle_out > 1:
            x = F.pixel_shuffle(x, self.shuffle_out)
        x = x[..., m:m + h, m:m + w]
        return torch.sigmoid(x) if self.sigmoid else x.clamp(0.0, 1.0)


def scale_output_layer(network: TransformerNet, factor: float) -> TransformerNet:
    """Multiply the output convolution's initial weights by ``factor``: with a small one the
    untrained network's output is nearly flat grey for any seed (see train.OUTPUT_INIT_SCALE)."""
    with torch.no_grad():
        network.head[1].weight.mul_(factor)
    return network


class FoldedConv(nn.Module):
    """A ``BlockConv2d`` or ``UpsampleConv2d`` with its kernel folded once, for inference: the same
    function without the operations that fold the trained kernel at every call (on a GPU each
    a kernel launch): a pass of the bundled network computes 53 instead of 59
    (benchmarks/launches.py)."""

    def __init__(self, layer: BlockConv2d | UpsampleConv2d) -> None:
        super().__init__()
        with torch.no_grad():
            weight, bias = layer.folded()
        # 0: on 2x2 blocks, 1: bilinear upsampling, 2: nearest (plain ints for TorchScript).
        self.kind = 0 if isinstance(layer, BlockConv2d) else 1 if layer.bilinear else 2
        # Not in the state dict: these are not the trained weights a model file holds.
        self.register_buffer("weight", weight.detach().clone(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == 0:
            return block_conv(x, self.weight, self.bias)
        if self.kind == 1:
            return bilinear_phase_conv(x, self.weight, self.bias)
        return nearest_phase_conv(x, self.weight, self.bias)


def for_inference(network: TransformerNet) -> TransformerNet:
    """A copy of ``network`` for inference only (eval mode, no gradients) with its kernels folded
    once (``FoldedConv``): the same output, bit for bit, from fewer operations. Train and save the
    original; this copy's state dict lacks the folded layers' weights."""
    copy = deepcopy(network).eval().requires_grad_(False)
    for module in list(copy.modules()):
        for name, child in module.named_children():
            if isinstance(child, (BlockConv2d, UpsampleConv2d)):
                setattr(module, name, FoldedConv(child))
    return copy


def infer(network: nn.Module, image: torch.Tensor, device: torch.device, half: bool = False) -> torch.Tensor:
    """``network(image)`` in inference mode; ``half``: in mixed precision (--half). ``image`` is
    on ``device`` already, and so is the result, in the network's output type."""
    with torch.inference_mode(), autocast(device, half):
        return network(image)


def stylize_image(network: TransformerNet, image: torch.Tensor, device: torch.device,
                  half: bool = False) -> torch.Tensor:
    """One forward pass in inference mode (batch norm uses its running statistics); ``half``:
    in mixed precision (--half). The result is float32 on the CPU."""
    was_training = network.training
    network.eval()
    result = infer(network, image.to(device), device, half).float().cpu()
    network.train(was_training)
    return result
