"""Stylising images of any size with a trained network in bounded memory: overlapping tiles.

Two things make tiles invisible. Instance normalisation (Ulyanov et al.) normalises every
feature map by its own mean and variance; computed per tile these statistics jump from tile to
tile (a dark sky tile gets stretched differently from a bright one) and each tile shows as a
patch. So the statistics are measured once on the whole image, downscaled to a size that fits,
and every tile is normalised with them. Second, each tile's outermost pixels see reflection
padding instead of their real neighbours; tiles overlap, those margins get no weight, and a
linear ramp across the rest of the overlap blends neighbours (feathering).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from stylize.device import autocast
from stylize.imageio import fit_long_side, resize
from stylize.transformer import STRIDE, TransformerNet

# Peak bytes per pixel of one untiled forward pass in inference mode, per channel of the first
# layer (the full-resolution maps of the last layers dominate), plus a fixed part. Measured on the
# CPU at 1024x768 (peak resident memory over what was resident before the pass; the upsampling
# layers no longer make an upsampled map): 547-589 B/px for the classic network (width 32; about
# 1080 before), 299-399 at width 16, 108 for the bundled models' shuffled layout (width 16).
# The peak of the same pass varies by up to a third between runs, so the estimate keeps a margin
# above the highest (tests/test_tiling.py checks both ways). benchmarks/batch.py prints it next
# to a tiled run.
_BYTES_PER_PIXEL_PER_WIDTH = 20
_BYTES_PER_PIXEL_FIXED = 160
MIN_TILE = 128


def _bytes_per_pixel(network: TransformerNet) -> int:
    # A shuffled network's largest maps have the same channels at a quarter of the pixels.
    per_width = _BYTES_PER_PIXEL_PER_WIDTH / network.config.shuffle ** 2
    return int(per_width * network.config.width) + _BYTES_PER_PIXEL_FIXED


def estimate_bytes(network: TransformerNet, height: int, width: int) -> int:
    """Rough peak memory of stylising a height x width image in one pass (the network adds its
    edge margin around it)."""
    border = 2 * network.margin
    return _bytes_per_pixel(network) * (height + border) * (width + border)


def largest_fitting_side(network: TransformerNet, budget: int, aspect: float = 1.0) -> int:
    """The longest side of an image (of the given height/width aspect) whose pass fits ``budget`` bytes."""
    pixels = budget / _bytes_per_pixel(network)
    r, b = min(aspect, 1 / aspect), 2 * network.margin
    # The positive root of (long + b) * (r * long + b) = pixels.
    root = (b * b * (1 + r) ** 2 - 4 * r * (b * b - pixels)) ** 0.5
    return max(0, int((root - b * (1 + r)) / (2 * r)))


def overlap_for(tile: int) -> int:
    """Overlap between neighbouring tiles: wider than the network's receptive field's reach
    (about 50 px for the classic network), but at most half a tile."""
    return min(128, tile // 2)


@dataclass(frozen=True)
class TileProgress:
    """Reported after each tile of a tiled image."""

    done: int
    total: int


def stylize_tiled(network: TransformerNet, image: torch.Tensor, device: torch.device, tile: int,
                  stats_side: int, half: bool = False,
                  on_tile: Callable[[TileProgress], None] | None = None) -> torch.Tensor:
    """Stylise ``image`` ([1,3,H,W] in [0,1], on the CPU) tile by tile; the result is on the CPU.

    ``stats_side``: long side of the downscaled whole image that instance-norm statistics come
    from (the largest that fits in memory; the image's own size when it fits). ``half``: in mixed
    precision (--half). ``on_tile``: called after each tile (a large photo takes a while on a CPU).
    """
    network.eval()
    height, width = image.shape[-2:]
    overlap = overlap_for(tile)
    with torch.inference_mode(), autocast(device, half):
        small = resize(image, fit_long_side(height, width, min(stats_side, max(height, width))))
        stats = _instance_statistics(network, small.to(device))
        total = torch.zeros(1, 3, height, width)
        weight = torch.zeros(1, 1, height, width)
        windows = list(_windows(height, width, tile, overlap))
        if on_tile:
            on_tile(TileProgress(0, len(windows)))
        with _frozen_instance_norm(network, stats):
            for done, (y, x) in enumerate(windows, 1):
                # The last row and column run to the image's edge (up to STRIDE - 1 px more).
                y1 = y + tile if y + tile + STRIDE <= height else height
                x1 = x + tile if x + tile + STRIDE <= width else width
                out = network(image[..., y:y1, x:x1].to(device)).float().cpu()
                w = _feather(out.shape[-2:], (y, x), (height, width), overlap)
                total[..., y:y1, x:x1] += out * w
                weight[..., y:y1, x:x1] += w
                if on_tile:
                    on_tile(TileProgress(done, len(windows)))
    return (total / weight).clamp_(0.0, 1.0)


def _windows(height: int, width: int, tile: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Top-left corners of tiles covering the image; the last row and column end at its edge.

    Corners sit on multiples of the network's stride (4): a tile sampled on another phase of the
    strided convolutions' grid would come out different from the untiled image."""
    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        step = (tile - overlap) // STRIDE * STRIDE
        positions = list(range(0, length - tile, step))
        return positions + [(length - tile) // STRIDE * STRIDE]

    for y in starts(height):
        for x in starts(width):
            yield y, x


def _feather(shape: tuple[int, int], corner: tuple[int, int], image: tuple[int, int], overlap: int) -> torch.Tensor:
    """Blending weights of one tile: zero on the outer quarter of the overlap at edges shared with
    a neighbour (padding artefacts), a linear ramp across the middle, one inside and at image edges."""
    margin = overlap // 4
    ramp_len = max(1, overlap - 2 * margin)

    def axis(length: int, start: int, full: int) -> torch.Tensor:
        pos = torch.arange(length, dtype=torch.float32)
        w = torch.ones(length)
        if start > 0:  # a neighbour before this tile
            w = torch.minimum(w, ((pos - margin + 0.5) / ramp_len).clamp(0, 1))
        if start + length < full:  # a neighbour after it
            w = torch.minimum(w, ((length - 1 - pos - margin + 0.5) / ramp_len).clamp(0, 1))
        return w

    wy = axis(shape[0], corner[0], image[0])
    wx = axis(shape[1], corner[1], image[1])
    return (wy[:, None] * wx[None, :]).clamp_min(1e-6).view(1, 1, *shape)


def _instance_norms(network: nn.Module) -> list[nn.InstanceNorm2d]:
    return [m for m in network.modules() if isinstance(m, nn.InstanceNorm2d)]


def _instance_statistics(network: TransformerNet,
                         image: torch.Tensor) -> dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """Each instance-norm layer's per-channel input mean and variance on ``image``."""
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].float()
        stats[module] = (x.mean(dim=(2, 3)), x.var(dim=(2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(record) for m in _instance_norms(network)]
    try:
        network(image)
    finally:
        for handle in handles:
            handle.remove()
    return stats


@contextmanager
def _frozen_instance_norm(network: TransformerNet, stats: dict) -> Iterator[None]:
    """Make every instance-norm layer use the given statistics instead of its input's own."""
    norms = _instance_norms(network)
    for module in norms:
        module.forward = functools.partial(_normalise_with, module, *stats[module])  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module in norms:
            del module.forward  # back to the class's forward


def _normalise_with(module: nn.InstanceNorm2d, mean: torch.Tensor, var: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    x = (x - mean[:, :, None, None]) * torch.rsqrt(var[:, :, None, None] + module.eps)
    if module.affine:
        x = x * module.weight[None, :, None, None] + module.bias[None, :, None, None]
    return x
