"""The motion between two video frames: the camera's, as one shift of the whole picture, then
every pixel's (``stylize.flow``).

``--init previous`` starts each frame of a batch from the previous frame's result; moved with
the picture first, the painted texture stays on the things it covers instead of sliding over
them. Phase correlation (Kuglin and Hines 1975) finds the camera's shift: the peak of the
normalised cross-power spectrum's inverse transform. It also tells a cut to another shot, and
starts the dense optical flow, which follows what the shift does not model: objects that move on
their own, a zoom, a turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylize.flow import estimate_flow, flows_both_ways, luminance, matching, reliable, warp
from stylize.imageio import resize

# Aligned frames further apart than this (mean absolute luminance difference, 0-1) are taken as
# a cut to another shot, whose first frame starts from its own photo. Consecutive frames of one
# shot differ by about 0.01-0.05 (noise, moving objects); unrelated photos by more: 0.137 at the
# least over 119 pairs of the shared photos at 256x192, each aligned by its best shift.
CUT_DIFFERENCE = 0.1
# A pixel of a network's frame is held to the previous result where the photo moved along the flow
# matches it to this much in every channel (0-1): the camera's noise (sigma 3/255) stays well
# below it; an uncovered or wrongly moved pixel mostly does not. 0.05 held fewer pixels of a zoom,
# whose frames are resampled (temporal error 0.0082 against 0.0076 at 512 px; benchmarks/RESULTS.md).
HOLD_TOLERANCE = 0.1


def estimate_shift(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    """(dy, dx) in pixels, to a fraction of one, such that ``after`` is about ``before`` moved down
    by dy and right by dx (both [1,3,H,W] of one size); within half the picture's size either way."""
    a, b = luminance(before), luminance(after)
    height, width = a.shape
    # A Hann window keeps the picture's borders, which do not match across a shift, out of the peak.
    window = torch.outer(torch.hann_window(height, periodic=False), torch.hann_window(width, periodic=False))
    fa, fb = torch.fft.rfft2((a - a.mean()) * window), torch.fft.rfft2((b - b.mean()) * window)
    cross = fb * fa.conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-12), s=(height, width))
    y, x = divmod(int(surface.flatten().argmax()), width)
    # To a fraction of a pixel: a frame's whole-pixel error lets the texture slide over the
    # picture, up to half a pixel a frame (12 px a second at 24 frames), and a downscaled video
    # pans by fractions. On a pan of 1.25 px a frame the results four frames apart differed by
    # 0.077 with whole pixels, 0.057 with a parabola's vertex (which read 1.135 px) and 0.043 with
    # this estimate (1.249-1.259 px; benchmarks/RESULTS.md).
    dy = y + _fraction(surface[(y - 1) % height, x], surface[y, x], surface[(y + 1) % height, x])
    dx = x + _fraction(surface[y, (x - 1) % width], surface[y, x], surface[y, (x + 1) % width])
    return (dy - height if dy > height / 2 else dy), (dx - width if dx > width / 2 else dx)


def _fraction(left: torch.Tensor, middle: torch.Tensor, right: torch.Tensor) -> float:
    """The peak's offset toward its larger neighbour n: n / (n + peak) (Foroosh, Zerubia and
    Berthod 2002, for the phase correlation of a shift by a fraction of a pixel)."""
    neighbour, sign = (float(right), 1.0) if right >= left else (float(left), -1.0)
    peak = float(middle)
    return 0.0 if neighbour <= 0 or peak <= 0 else sign * min(0.5, neighbour / (neighbour + peak))


def shift(image: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """``image`` moved down by ``dy`` and right by ``dx`` pixels (fractions interpolated
    linearly); the strip uncovered repeats the edge (the frame's iterations paint it)."""
    y, x = math.floor(dy), math.floor(dx)
    fy, fx = dy - y, dx - x
    moved = _whole_shift(image, y, x)
    if fx:
        moved = torch.lerp(moved, _whole_shift(image, y, x + 1), fx)
    if fy:
        below = _whole_shift(image, y + 1, x)
        below = torch.lerp(below, _whole_shift(image, y + 1, x + 1), fx) if fx else below
        moved = torch.lerp(moved, below, fy)
    return moved


def _whole_shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    dy, dx = max(-height + 1, min(height - 1, dy)), max(-width + 1, min(width - 1, dx))
    padded = F.pad(image, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), mode="replicate")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + height, left:left + width]


def follow(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float] | None:
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
    rows = slice(max(math.ceil(dy), 0), height + min(math.floor(dy), 0))
    cols = slice(max(math.ceil(dx), 0), width + min(math.floor(dx), 0))
    difference = (luminance(moved)[rows, cols] - luminance(after)[rows, cols]).abs().mean()
    return None if float(difference) > CUT_DIFFERENCE else (dy, dx)


@dataclass(frozen=True)
class Carried:
    """The previous frame's result moved onto the next frame, and where that can be trusted."""

    image: torch.Tensor  # [1,3,H,W]
    trusted: torch.Tensor | None  # [1,1,H,W], 1 where the frame before showed the pixel; None: not asked for


def carry(result: torch.Tensor, before: torch.Tensor, after: torch.Tensor, moved: tuple[float, float],
          trust: bool = True, mask: torch.Tensor | None = None) -> Carried:
    """The result of frame ``before`` moved onto frame ``after`` (photos [1,3,H,W] of the result's
    size) along the optical flow, which starts from the camera's shift ``moved`` (see ``follow``).
    Where ``after`` shows what ``before`` did not (uncovered by a moving object or the pan), the
    texture of the nearest match is carried in (past the picture's edge: the result mirrored
    there), and ``trusted`` (with ``trust``: the flow back as well, flow.reliable) is 0 there, as
    where the result was the photo, outside the ``mask`` of ``before`` (``_painted``), where the
    painted texture around is carried in instead (``pull_push``)."""
    if trust:
        backward, forward = flows_both_ways(before, after, moved)
    else:
        backward, forward = estimate_flow(after, before, start=(-moved[0], -moved[1])), None
    painted = None if mask is None else _painted(mask, backward, result)
    trusted = None if forward is None else reliable(backward, forward)[None, None].to(result.dtype)
    if trusted is not None and painted is not None:
        trusted = trusted * painted
    image = _moved(result, backward)
    if painted is not None:
        # Where a matted subject moved off the background (--mask mattes/ --invert-mask), the
        # background it uncovers started from the subject's photo, and the frame's iterations left
        # a pale trail there; started from the painted background around it, the trail's detail
        # rose from 0.54 to 0.67 of the rest's (benchmarks/RESULTS.md).
        image = pull_push(image, painted)
    return Carried(image, trusted)


def _moved(result: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """``result`` moved along ``backward`` (the flow from the frame it is moved onto).

    Bicubically: the result is resampled again every frame, and bilinear interpolation's blur
    adds up, even where nothing moves (the flow is never exactly 0). Bilinearly, 40 frames of a
    still camera ended with 80 % of the first frame's fine detail, a 24-frame zoom with 59 %;
    bicubically 100 % and 73 %, at the same objective. Mirrored past the edge: the edge repeated
    drew streaks across the strip a pan uncovers, which the frame's iterations did not paint out
    and the frames after held (benchmarks/RESULTS.md, "Carried bicubically and mirrored")."""
    return warp(result, backward, "bicubic", "reflection").clamp(0, 1)


def _painted(mask: torch.Tensor, backward: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[1,1,H,W] of ``like``'s size and type: the previous frame's ``mask`` (any size of its
    proportions) moved along ``backward``, 1 where the previous result moved there was painted,
    0 where it was the photo. A frame is not held there: under a still mask over a moving camera,
    held to the photo, a band of it grew frame by frame inside the mask's edge (tested)."""
    return warp(resize(mask.to(like), tuple(like.shape[-2:])), backward).clamp(0, 1)


def pull_push(image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``image`` ([1,C,H,W]) where ``weight`` ([1,1,H,W], 0-1) is 1; elsewhere the weighted mean
    of its surroundings, coarse to fine (Gortler et al. 1996, "The Lumigraph", pull-push)."""
    if min(image.shape[-2:]) <= 2 or bool((weight > 0.999).all()):
        return image
    total = F.avg_pool2d(weight, 2, ceil_mode=True)
    coarse = F.avg_pool2d(image * weight, 2, ceil_mode=True) / total.clamp_min(1e-6)
    coarse = pull_push(coarse, (4 * total).clamp(max=1))  # one painted pixel of four: enough
    return torch.lerp(F.interpolate(coarse, size=image.shape[-2:], mode="bilinear", align_corners=False), image,
                      weight)


def hold(result: torch.Tensor, previous: torch.Tensor, before: torch.Tensor, after: torch.Tensor,
         moved: tuple[float, float], weight: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """A trained network's ``result`` for frame ``after``, held to ``previous`` (its result for frame
    ``before``) moved onto it along the optical flow, as ``carry`` moves it: where ``after`` shows
    what ``before`` did, (result + weight * moved result) / (1 + weight), the pixel that minimises
    |x - result|^2 + weight * |x - moved result|^2, the squared difference Ruder et al. (2016)
    weigh in the iterative method's objective (stylize.losses.temporal_consistency), here against
    the network's output; elsewhere (uncovered, a wrong flow, outside the ``mask`` of ``before``:
    ``_painted``) the network's own. All [1,3,H,W] of one size."""
    backward = estimate_flow(after, before, start=(-moved[0], -moved[1]))
    # Where the photo moved along the flow matches the frame (flow.matching), not their flows there
    # and back (flow.reliable, as ``carry``): one flow instead of two, 1.2-2x as fast a frame at
    # 256-512 px on the CPU, with the same or a lower temporal error (benchmarks/RESULTS.md).
    shown = matching(after, before, backward, HOLD_TOLERANCE)[None, None].to(result.dtype)
    if mask is not None:
        shown = shown * _painted(mask, backward, shown)
    return torch.lerp(result, _moved(previous, backward), shown * (weight / (1 + weight)))
