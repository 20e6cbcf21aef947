"""Dense optical flow between two video frames: where each pixel of a frame was in the frame before.

``--init previous`` moves the previous frame's result onto the next frame before optimising it.
One shift of the whole picture (``stylize.motion``) follows a camera's pan; what moves on its own
(a walker, a car, leaves), a zoom or a turn needs a motion for every pixel. Ruder, Dosovitskiy and
Brox ("Artistic style transfer for videos", 2016) warp the previous result along the optical flow
for this; they compute it with DeepFlow or EpicFlow, programs outside Python. Here it is TV-L1
(Zach, Pock and Bischof 2007), as Sánchez, Meinhardt-Llopis and Facciolo describe and parameterise
it ("TV-L1 optical flow estimation", IPOL 2013): the L1 data term tolerates pixels that have no
match, the total-variation term keeps motion boundaries sharp; solved coarse to fine, with the
image warped anew several times a level. Plain tensor operations, so it runs on any device, and
deterministically.

Flows here are [2,H,W] tensors (dy, dx) in pixels: ``flow[:, y, x]`` points from pixel (y, x) of
one frame to where the same point is in the other.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from stylize.color import rgb_to_yiq

# IPOL 2013's defaults (intensities 0-255): the data term's weight, the coupling of the two
# sub-problems and the dual step (Chambolle's bound for it is 1/8; 0.25 converges in practice).
LAMBDA, THETA, TAU = 0.15, 0.3, 0.25
WARPS = 5  # image warpings a level
# Dual iterations a warping. 15 halved the flow's time (0.66 against 1.57 s at 512x384) but the
# texture on an object crossing the picture changed 13 % more from frame to frame (0.0172 against
# 0.0152, benchmarks/frames.py); a frame's own iterations take ten times as long.
ITERATIONS = 30
COARSEST = 16  # px: the pyramid's smallest level's short side
# The flow is computed at this long side at most and scaled up: the result is moved as a whole
# texture, which a flow at 512 px follows to about a pixel, and larger frames would cost seconds.
MAX_SIDE = 512
# Frames up to this many pixels have their two flows (there and back) found in one batch: on the
# 2-core CPU 1.27-1.31x as fast at 128-256 px, but 0.96-0.99x at 384-512 px, where the batch's
# operations outgrow the caches (benchmarks/flow.py; the same flows to the bit either way). On a
# GPU, where the flow's small operations cost their launches, always.
ONE_BATCH_PIXELS = 256 * 256


def warp(image: torch.Tensor, flow: torch.Tensor, mode: Literal["bilinear", "bicubic"] = "bilinear",
         outside: Literal["border", "reflection"] = "border") -> torch.Tensor:
    """[B,C,H,W] ``image`` sampled at each pixel plus ``flow`` ([2,H,W], or [B,2,H,W]: one for
    each image), bilinearly or bicubically (Keys' kernel, which may overshoot the image's range);
    points outside the picture take its nearest edge, or (``outside="reflection"``) the picture
    mirrored at its edges."""
    if mode == "bicubic" and image.device.type == "mps":  # not every torch has it on MPS; once a frame
        return warp(image.cpu(), flow.cpu(), mode, outside).to(image.device)
    height, width = image.shape[-2:]
    ys = torch.arange(height, device=image.device, dtype=flow.dtype).view(-1, 1)
    xs = torch.arange(width, device=image.device, dtype=flow.dtype).view(1, -1)
    # grid_sample's coordinates: -1 and 1 are the centres of the corner pixels (align_corners).
    gy = (ys + flow[..., 0, :, :]) * (2 / max(height - 1, 1)) - 1
    gx = (xs + flow[..., 1, :, :]) * (2 / max(width - 1, 1)) - 1
    grid = torch.stack((gx, gy), dim=-1)
    grid = grid.unsqueeze(0).expand(image.shape[0], -1, -1, -1) if flow.dim() == 3 else grid
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode=outside, align_corners=True)


def estimate_flow(frame: torch.Tensor, other: torch.Tensor, start: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """The flow from ``frame`` to ``other`` (both [H,W] luminance in [0,1], or [1,3,H,W] RGB): for
    each pixel of ``frame``, (dy, dx) to the same point in ``other``. ``start``: a motion of the
    whole picture already known (a camera's pan), which the pyramid then refines."""
    return _estimate(luminance(frame)[None], luminance(other)[None], [start])[0]


def flows_both_ways(before: torch.Tensor, after: torch.Tensor, moved: tuple[float, float] = (0.0, 0.0)
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(``estimate_flow(after, before)``, ``estimate_flow(before, after)``): the same flows, found
    at once (one batch of two) where that is faster. ``moved``: the camera's shift from ``before``
    to ``after``, if known."""
    a, b = luminance(before), luminance(after)
    starts = [(-moved[0], -moved[1]), moved]
    if a.device.type == "cpu" and a.numel() > ONE_BATCH_PIXELS:
        return _estimate(b[None], a[None], starts[:1])[0], _estimate(a[None], b[None], starts[1:])[0]
    flows = _estimate(torch.stack((b, a)), torch.stack((a, b)), starts)
    return flows[0], flows[1]


def _estimate(frames: torch.Tensor, others: torch.Tensor, starts: list[tuple[float, float]]) -> torch.Tensor:
    """[B,2,H,W]: the flow from each of ``frames`` to the same of ``others`` ([B,H,W] luminance)."""
    height, width = frames.shape[-2:]
    scale = min(1.0, MAX_SIDE / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if scale < 1:
        frames, others = _resize(frames, size), _resize(others, size)
    levels = _pyramid(frames * 255, others * 255)
    small = levels[-1][0].shape[-2:]
    flow = torch.tensor(starts, dtype=torch.float32, device=frames.device).view(-1, 2, 1, 1)
    flow = (flow * torch.tensor([small[0] / height, small[1] / width], device=frames.device).view(2, 1, 1)
            ).expand(-1, 2, *small).clone()
    for index, (a, b) in enumerate(reversed(levels)):
        if index:
            flow = _upsample_flow(flow, a.shape[-2:])
        flow = _tvl1(a, b, flow)
    return _upsample_flow(flow, (height, width)) if flow.shape[-2:] != (height, width) else flow


def reliable(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """[H,W]: True where a frame's pixel is seen in the other frame and its flow can be trusted.

    ``backward`` is the flow from the frame to the other, ``forward`` from the other back. As
    Ruder et al. (2016) after Sundaram et al. (2010): a pixel is left out where the two flows do
    not undo each other (it was hidden in the other frame: uncovered by a moving object or the
    camera), at motion boundaries, where the flow is least exact, and where it points outside the
    other frame."""
    there = warp(forward[None], backward)[0]  # the forward flow where each pixel comes from
    trip = (backward + there).pow(2).sum(0)
    hidden = trip > 0.01 * (backward.pow(2).sum(0) + there.pow(2).sum(0)) + 0.5
    return _inside(backward) & ~hidden & ~_boundary(backward)


def matching(frame: torch.Tensor, other: torch.Tensor, backward: torch.Tensor, tolerance: float) -> torch.Tensor:
    """[H,W]: True where ``frame`` ([1,3,H,W]) shows what ``other`` did, by one flow where
    ``reliable`` needs two: ``other`` moved along ``backward`` (the flow from ``frame`` to it)
    differs from it by less than ``tolerance`` in every channel (a pixel uncovered by a moving
    object or the camera mostly shows something else), away from motion boundaries (where what
    is uncovered lies, and where the flow is least exact), and the flow points inside ``other``."""
    moved = warp(other, backward, "bicubic")
    return _inside(backward) & ~_boundary(backward) & ((frame - moved).abs().amax(1)[0] < tolerance)


def _boundary(backward: torch.Tensor) -> torch.Tensor:
    """[H,W]: True at motion boundaries, where the flow changes fast for its size (Sundaram et al.)."""
    return _gradient(backward).pow(2).sum((0, 1)) > 0.01 * backward.pow(2).sum(0) + 0.002


def _inside(backward: torch.Tensor) -> torch.Tensor:
    """[H,W]: True where the flow points inside the other frame."""
    height, width = backward.shape[-2:]
    ys = torch.arange(height, device=backward.device).view(-1, 1) + backward[0]
    xs = torch.arange(width, device=backward.device).view(1, -1) + backward[1]
    return (ys >= 0) & (ys <= height - 1) & (xs >= 0) & (xs <= width - 1)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """[1,3,H,W] RGB to [H,W] luminance (YIQ's Y); [H,W] as it is."""
    return image.float() if image.dim() == 2 else rgb_to_yiq(image.float())[0, 0]


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B,H,W] to ``size``, low-passed first when smaller (no aliasing into the flow)."""
    return F.interpolate(image[:, None], size=size, mode="bilinear", antialias=True, align_corners=False)[:, 0]


def _pyramid(frame: torch.Tensor, other: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Both [B,H,W] halved in turn until the short side would fall below COARSEST; finest first."""
    levels = [(_smooth(frame), _smooth(other))]
    while min(levels[-1][0].shape[-2:]) // 2 >= COARSEST:
        a, b = levels[-1]
        size = (a.shape[-2] // 2, a.shape[-1] // 2)
        levels.append((_resize(a, size), _resize(b, size)))
    return levels


def _smooth(image: torch.Tensor) -> torch.Tensor:
    """[B,H,W] lightly blurred (Gaussian, sigma 0.8, IPOL's presmoothing): noise makes no gradients."""
    kernel = torch.tensor([0.0668, 0.2417, 0.3830, 0.2417, 0.0668], device=image.device)
    padded = F.pad(image[:, None], (2, 2, 2, 2), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 5, 1))
    return F.conv2d(rows, kernel.view(1, 1, 1, 5))[:, 0]


def _upsample_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B,2,h,w] to [B,2,H,W] of ``size``, its vectors scaled with it."""
    ratio = torch.tensor([size[0] / flow.shape[-2], size[1] / flow.shape[-1]], device=flow.device).view(2, 1, 1)
    return F.interpolate(flow, size=size, mode="bilinear", align_corners=False) * ratio


def _gradient(image: torch.Tensor) -> torch.Tensor:
    """[..., H, W] -> [..., 2, H, W]: central differences (dy, dx), one-sided at the borders."""
    return torch.stack(torch.gradient(image, dim=(-2, -1)), dim=-3)


def _forward_difference(u: torch.Tensor) -> torch.Tensor:
    """[...,2,H,W] -> [...,2,2,H,W]: each component's forward differences (d/dy, d/dx), 0 at the far border."""
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
    return torch.stack((dy, dx), dim=-3)


def _divergence(p: torch.Tensor) -> torch.Tensor:
    """[...,2,2,H,W] -> [...,2,H,W]: minus the adjoint of ``_forward_difference`` (backward
    differences, the far border's value taken as 0)."""
    py = F.pad(p[..., 0, :-1, :], (0, 0, 0, 1))
    px = F.pad(p[..., 1, :, :-1], (0, 1, 0, 0))
    return py - F.pad(py[..., :-1, :], (0, 0, 1, 0)) + px - F.pad(px[..., :, :-1], (1, 0, 0, 0))


def _tvl1(frame: torch.Tensor, other: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """One pyramid level of TV-L1 (IPOL 2013, Algorithm 1) for a batch ([B,H,W] images, [B,2,H,W]
    flows): ``flow`` refined so that other(x + flow(x)) matches frame(x)."""
    u = flow.clone()
    p = torch.zeros(*u.shape[:2], 2, *u.shape[2:], device=u.device)
    gradient = _gradient(other)
    step = LAMBDA * THETA
    for _ in range(WARPS):
        warped = warp(torch.cat((other[:, None], gradient), 1), u)
        image, grad = warped[:, 0], warped[:, 1:]
        squared = (grad * grad).sum(1)
        # rho(u) = I1(x + u0) + grad . (u - u0) - I0(x): the data term linearised around u0.
        constant = image - (grad * u).sum(1) - frame
        safe = squared.clamp_min(1e-9)
        for _ in range(ITERATIONS):
            rho = constant + (grad * u).sum(1)
            # The data term's proximal step (IPOL 2013 eq. 27): move against rho, at most lambda*theta*|grad|.
            move = torch.where(rho < -step * squared, step, torch.where(rho > step * squared, -step, -rho / safe))
            v = u + (move * (squared > 1e-9))[:, None] * grad
            u = v + THETA * _divergence(p)
            difference = _forward_difference(u)
            norm = difference.pow(2).sum(-3, keepdim=True).sqrt()
            p = (p + (TAU / THETA) * difference) / (1 + (TAU / THETA) * norm)
    return u
