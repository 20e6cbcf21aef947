"""The camera's motion between two video frames, as one shift of the whole picture.

``--init previous`` starts each frame of a batch from the previous frame's result; moved by the
camera's pan first, the painted texture stays on the things it covers instead of sliding over
them. Phase correlation (Kuglin and Hines 1975) finds the shift: the peak of the normalised
cross-power spectrum's inverse transform. Zoom, rotation and objects that move on their own are
not modelled: the frame's own iterations repaint those parts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylize.color import rgb_to_yiq

# Aligned frames further apart than this (mean absolute luminance difference, 0-1) are taken as
# a cut to another shot, whose first frame starts from its own photo. Consecutive frames of one
# shot differ by about 0.01-0.05 (noise, moving objects); unrelated photos by more: 0.137 at the
# least over 119 pairs of the shared photos at 256x192, each aligned by its best shift.
CUT_DIFFERENCE = 0.1


def luminance(image: torch.Tensor) -> torch.Tensor:
    """[1,3,H,W] RGB to [H,W] luminance."""
    return rgb_to_yiq(image.float())[0, 0]


def estimate_shift(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int]:
    """(dy, dx) in whole pixels such that ``after`` is about ``before`` moved down by dy and right
    by dx (both [1,3,H,W] of one size); within half the picture's size either way."""
    a, b = luminance(before), luminance(after)
    height, width = a.shape
    # A Hann window keeps the picture's borders, which do not match across a shift, out of the peak.
    window = torch.outer(torch.hann_window(height, periodic=False), torch.hann_window(width, periodic=False))
    fa, fb = torch.fft.rfft2((a - a.mean()) * window), torch.fft.rfft2((b - b.mean()) * window)
    cross = fb * fa.conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-12), s=(height, width))
    peak = int(surface.flatten().argmax())
    dy, dx = divmod(peak, width)
    return (dy - height if dy > height // 2 else dy), (dx - width if dx > width // 2 else dx)


def shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` moved down by ``dy`` and right by ``dx`` pixels; the strip uncovered repeats the
    edge (the frame's iterations paint it)."""
    height, width = image.shape[-2:]
    dy, dx = max(-height + 1, min(height - 1, dy)), max(-width + 1, min(width - 1, dx))
    padded = F.pad(image, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), mode="replicate")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + height, left:left + width]


def follow(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int] | None:
    """The shift from frame ``before`` to ``after`` (see ``estimate_shift``), or None where they
    do not show one shot (a cut, or photos of another size)."""
    if before.shape != after.shape:
        return None
    dy, dx = estimate_shift(before, after)
    height, width = after.shape[-2:]
    if abs(dy) >= height // 2 or abs(dx) >= width // 2:
        return None
    moved = shift(before, dy, dx)
    # Compared where both frames hold the picture (not the repeated edge strip).
    rows = slice(max(dy, 0), height + min(dy, 0))
    cols = slice(max(dx, 0), width + min(dx, 0))
    difference = (luminance(moved)[rows, cols] - luminance(after)[rows, cols]).abs().mean()
    return None if float(difference) > CUT_DIFFERENCE else (dy, dx)
