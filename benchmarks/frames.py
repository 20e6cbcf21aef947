"""Video frames through the iterative method: each frame on its own (--init content, the
default) against --init previous (each frame from the previous frame's result moved onto it, at
full size only), the previous result moved by the camera's shift alone (as before 2026-11-29's
session 31) or along the optical flow (stylize.flow, now; before session 32 moved bilinearly
and with the picture's edge repeated outside it, --carried bilinear,edge), side by side on the
same clips.

    python benchmarks/frames.py [--size 256] [--frames 8] [--device cpu] [--clips pan,still,object,zoom]
                                [--zoom 1.02] [--carried bilinear,edge] [--model-temporal 1,2,3] [--models-only]
                                [--model-trust matching,both-ways]

The clips are made here from the shared photos, so their true motion is known: a pan (the view
moves 3 px a frame), a still camera, a still camera with an object crossing it (a piece of
golden_gate moving 4 px a frame over tubingen) and a zoom (2 % a frame into tubingen's centre);
each frame with its own sensor noise (sigma 3/255). Printed per clip and mode: the temporal
error, the mean absolute difference between each result and the one before moved by the true
motion, over the pixels the frame before shows (what a moving object uncovers is not counted;
the input frames' own, noise only, beside it), the mean final objective of the frames (content,
style and smoothing, each scored by its run, without the temporal term), the fine detail left in
the last result as a share of the first's (mean absolute Laplacian: resampling every frame
blurs), on the pan the strip of the last result that the camera uncovered over the clip: its
change across against down, beside the rest's (streaks drawn across it make it small) and the
seconds a frame. Also the bundled starry_night network, one pass a frame, on its own and held to
the frame before (--init previous) by each of --model-temporal's weights: the temporal error, the
detail, how far holding moved the results from its own, and the last frame's objective.
Reads ../shared/data (STYLIZE_SHARED to point elsewhere)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import torch
import torch.nn.functional as F

from common import SHARED, device_name, final_objective, setup_device
from stylize.config import MODEL_TEMPORAL_WEIGHT, BackboneConfig, InitKind, RunConfig
from stylize.features import load_extractor
from stylize.flow import warp
from stylize.imageio import LoadedImage, fit_long_side, load_image, resize
from stylize.losses import required_layers
from stylize import job, motion
from stylize.job import Fast, Frame, Iterative
from stylize.motion import Carried, shift

PAN = 3  # px a frame, at the run's size
OBJECT_SPEED = 4  # px a frame
ZOOM = 1.02  # a frame


@dataclass(frozen=True)
class Clip:
    """Frames and, for each after the first, the true motion back to the frame before: a flow
    ([2,H,W], each pixel to where it was) and the pixels the frame before shows ([H,W] bool)."""

    frames: list[torch.Tensor]
    flows: list[torch.Tensor]
    shown: list[torch.Tensor]
    uncovered: int = 0  # px at the right edge of the last frame that the first did not show


def _noisy(views: list[torch.Tensor]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [(v + torch.randn(v.shape, generator=generator) * 3 / 255).clamp(0, 1) for v in views]


def pan_clip(photo: torch.Tensor, size: tuple[int, int], frames: int, pan: int) -> Clip:
    """``frames`` views of ``photo`` of ``size``, the view moving ``pan`` px right a frame, noisy."""
    height, width = size
    big = resize(photo, fit_long_side(*photo.shape[-2:], int(max(height, width) * 1.25)))
    views = [big[..., 8:8 + height, 8 + pan * t:8 + pan * t + width] for t in range(frames)]
    flow = torch.zeros(2, height, width)
    flow[1] = pan
    shown = torch.zeros(height, width, dtype=torch.bool)
    shown[:, :width - pan] = True
    return Clip(_noisy(views), [flow] * (frames - 1), [shown] * (frames - 1), pan * (frames - 1))


def object_clip(photo: torch.Tensor, thing: torch.Tensor, size: tuple[int, int], frames: int) -> Clip:
    """A still view of ``photo`` with a piece of ``thing`` (a third of the height, two fifths of the
    width) crossing it, OBJECT_SPEED px right a frame."""
    height, width = size
    background = resize(photo, size)
    piece = resize(thing, size)[..., height // 4:height // 4 + height // 3, width // 4:width // 4 + 2 * width // 5]
    top, (ph, pw) = height // 3, piece.shape[-2:]
    views, flows, shown = [], [], []
    for t in range(frames):
        left = width // 10 + OBJECT_SPEED * t
        view = background.clone()
        view[..., top:top + ph, left:left + pw] = piece
        views.append(view)
        if t:
            flow = torch.zeros(2, height, width)
            flow[1, top:top + ph, left:left + pw] = -OBJECT_SPEED
            visible = torch.ones(height, width, dtype=torch.bool)
            visible[top:top + ph, left - OBJECT_SPEED:left] = False  # behind the piece a frame before
            flows.append(flow)
            shown.append(visible)
    return Clip(_noisy(views), flows, shown)


def zoom_clip(photo: torch.Tensor, size: tuple[int, int], frames: int, zoom: float = ZOOM) -> Clip:
    """A view of ``photo``'s centre, ``zoom`` times closer every frame."""
    height, width = size
    big = resize(photo, fit_long_side(*photo.shape[-2:], 2 * max(height, width)))
    ys = torch.linspace(-1, 1, height).view(-1, 1).expand(height, width)
    xs = torch.linspace(-1, 1, width).view(1, -1).expand(height, width)
    views = []
    for t in range(frames):
        grid = torch.stack((xs, ys), -1)[None] * (0.6 / zoom ** t)
        views.append(F.grid_sample(big, grid, mode="bicubic", align_corners=True).clamp(0, 1))
    cy, cx = (height - 1) / 2, (width - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    flow = torch.stack(((cy + (yy - cy) / zoom - yy), (cx + (xx - cx) / zoom - xx)))  # back toward the centre
    shown = ((yy + flow[0] >= 0) & (yy + flow[0] <= height - 1)) & ((xx + flow[1] >= 0) & (xx + flow[1] <= width - 1))
    return Clip(_noisy(views), [flow] * (frames - 1), [shown] * (frames - 1))


def pair_errors(images: list[torch.Tensor], clip: Clip) -> list[float]:
    """|frame t - frame t-1 moved by the true motion| for each pair in turn, where t-1 shows it
    (moved bicubically: bilinear interpolation's blur would favour soft results on a zoom)."""
    return [float((b - warp(a, flow, "bicubic")).abs().mean(1)[0][shown].mean())
            for a, b, flow, shown in zip(images, images[1:], clip.flows, clip.shown)]


def temporal_error(images: list[torch.Tensor], clip: Clip) -> float:
    return statistics.mean(pair_errors(images, clip))


def detail(image: torch.Tensor) -> float:
    """Fine detail: the mean absolute Laplacian (3x3) over the channels."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(F.conv2d(image.float().cpu(), kernel, groups=3).abs().mean())


def across_over_down(image: torch.Tensor) -> float:
    """Mean absolute change from pixel to pixel across (x) over that down (y)."""
    across = (image[..., 1:] - image[..., :-1]).abs().mean()
    return float(across / (image[..., 1:, :] - image[..., :-1, :]).abs().mean())


# How --init previous moved the previous result before session 32: "bilinear", bilinearly with the
# picture's edge repeated outside it; "edge", bicubically with the edge repeated.
CARRIED = {"bilinear": ("bilinear", "border"), "edge": ("bicubic", "border")}


def _carried_as(name: str) -> Callable[..., Carried]:
    mode, outside = CARRIED[name]

    def carry(result: torch.Tensor, before: torch.Tensor, after: torch.Tensor, moved: tuple[float, float],
              trust: bool = True, mask: torch.Tensor | None = None) -> Carried:
        with patch.object(motion, "warp", lambda image, flow, *_: warp(image, flow, mode, outside)):
            return motion.carry(result, before, after, moved, trust, mask)
    return carry


def _carry_shift(result: torch.Tensor, before: torch.Tensor, after: torch.Tensor,
                 moved: tuple[float, float], trust: bool = True, mask: torch.Tensor | None = None) -> Carried:
    """As --init previous moved the previous result before the optical flow: the camera's shift."""
    return Carried(shift(result, *moved), None)


def run(frames: list[torch.Tensor], style: LoadedImage, init: InitKind, size: int, device: str,
        temporal_weight: float = RunConfig.temporal_weight) -> tuple[list[torch.Tensor], list[float], float]:
    stylizer = Iterative(RunConfig(size=size, init=init, temporal_weight=temporal_weight), BackboneConfig(), device)
    results, objectives, previous = [], [], None
    start = time.perf_counter()
    for index, frame in enumerate(frames):
        content = LoadedImage(rgb=frame, alpha=None, path=Path(f"frame{index}.png"))
        if init is InitKind.previous:
            result, _ = stylizer.run_frame(content, [style], previous)
            previous = Frame(frame, result.image)
        else:
            result = stylizer.run(content, [style])
        results.append(result.image)
        objectives.append(result.losses["total"] - result.losses.get("temporal", 0.0))  # the style objective
    return results, objectives, (time.perf_counter() - start) / len(frames)


def first_longer(clip: Clip, style: LoadedImage, size: int, device: str, factors: list[int]) -> None:
    """--init previous with the first frame's full-size scale run each of ``factors`` times as
    long (stylize's FIRST_FRAME_ITERATIONS): the change between each pair of frames in turn and
    each frame's objective."""
    for factor in factors:
        job.FIRST_FRAME_ITERATIONS = factor
        results, objectives, seconds = run(clip.frames, style, InitKind.previous, size, device)
        print(f"  first frame x{factor}: pairs {' '.join(f'{e:.4f}' for e in pair_errors(results, clip))}; "
              f"objectives {' '.join(f'{o:.3f}' for o in objectives)}; {seconds:.1f} s a frame", flush=True)


def _hold_both_ways(result: torch.Tensor, previous: torch.Tensor, before: torch.Tensor, after: torch.Tensor,
                    moved: tuple[float, float], weight: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """motion.hold as first written (session 33): held where the flows there and back agree
    (motion.carry's flow.reliable) instead of where the moved photo matches the frame."""
    carried = motion.carry(previous, before, after, moved, mask=mask)
    assert carried.trusted is not None
    return torch.lerp(result, carried.image, carried.trusted * (weight / (1 + weight)))


HOLDS = {"matching": motion.hold, "both-ways": _hold_both_ways}


def model_frames(clip: Clip, device: str, weight: float, trust: str = "matching") -> tuple[list[torch.Tensor], float]:
    """The bundled starry_night network over the clip, each frame held to the one before by
    ``weight`` (0: each on its own, one pass) where ``trust`` (of HOLDS) says; the results and the
    seconds a frame."""
    model = Fast("starry_night", device, temporal_weight=weight, frames=True)
    results: list[torch.Tensor] = []
    start = time.perf_counter()
    with patch.object(job, "hold", HOLDS[trust]):
        for index, frame in enumerate(clip.frames):
            content = LoadedImage(rgb=frame, alpha=None, path=Path(f"frame{index}.png"))
            previous = Frame(clip.frames[index - 1], results[-1]) if results else None
            results.append(model.run_frame(content, previous)[0])
    return results, (time.perf_counter() - start) / len(clip.frames)


def compare_models(clip: Clip, style: LoadedImage, device: str, weights: list[float],
                   trusts: tuple[str, ...] = ("matching",)) -> None:
    """The bundled network on its own and held by each of ``weights``: the temporal error, the
    detail left, how far each result moved from the network's own output (mean absolute), and the
    last frame's objective (content + style, as stylize run scores it, in float32)."""
    config = RunConfig()
    extractor = load_extractor(BackboneConfig(), required_layers(config.loss), torch.device("cpu"))

    def objective(results: list[torch.Tensor]) -> float:
        return final_objective(extractor, config, clip.frames[-1], [style.rgb], results[-1])

    alone, seconds = model_frames(clip, device, 0.0)
    print(f"  --model starry_night (one pass a frame) temporal error {temporal_error(alone, clip):.4f}, "
          f"detail last/first {detail(alone[-1]) / detail(alone[0]):.3f}, last objective {objective(alone):.4f}, "
          f"{seconds:.2f} s a frame")
    for weight, trust in ((w, t) for w in weights for t in trusts):
        results, seconds = model_frames(clip, device, weight, trust)
        away = statistics.mean(float((r - a).abs().mean()) for r, a in zip(results, alone))
        label = "" if trusts == ("matching",) else f" ({trust})"
        print(f"    held{label}, --temporal-weight {weight:g}: temporal error {temporal_error(results, clip):.4f} "
              f"(pairs {' '.join(f'{e:.4f}' for e in pair_errors(results, clip))}), detail last/first "
              f"{detail(results[-1]) / detail(results[0]):.3f} (against the network's own last "
              f"{detail(results[-1]) / detail(alone[-1]):.3f}), from its own {away:.4f}, last objective "
              f"{objective(results):.4f}, {seconds:.2f} s a frame", flush=True)


def compare(name: str, clip: Clip, style: LoadedImage, size: int, device: str, temporal: list[float],
            baselines: bool = True, carried: tuple[str, ...] = (), model_weights: list[float] | None = None,
            models_only: bool = False, model_trusts: tuple[str, ...] = ("matching",)) -> None:
    """Every mode on one clip (``baselines``: also each frame on its own, the flow without the
    temporal term and the bundled network, on its own and held by each of ``model_weights``;
    ``carried``: also the flow's results moved in these ways of CARRIED, with each temporal
    weight; ``models_only``: the network's alone)."""
    print(f"{name}: the input frames' own temporal error {temporal_error(clip.frames, clip):.4f}")
    if baselines or models_only:
        compare_models(clip, style, device, model_weights or [], model_trusts)
    if models_only:
        return
    modes = [("--init content", InitKind.content, None, 0.0),
             ("--init previous, shift", InitKind.previous, _carry_shift, 0.0),
             ("--init previous, flow", InitKind.previous, job.carry, 0.0)]
    modes = [mode for mode in modes if baselines or mode[2] is _carry_shift]
    modes += [(f"  and temporal {weight:g}", InitKind.previous, job.carry, weight) for weight in temporal]
    modes += [(f"  {way}, temporal {weight:g}", InitKind.previous, _carried_as(way), weight)
              for way in carried for weight in temporal]
    for label, init, carry, weight in modes:
        with patch.object(job, "carry", carry or job.carry):
            results, objectives, seconds = run(clip.frames, style, init, size, device, weight)
        print(f"  {label:<24} temporal error {temporal_error(results, clip):.4f} (pairs "
              f"{' '.join(f'{e:.4f}' for e in pair_errors(results, clip))}), objective "
              f"{statistics.mean(objectives):.4f} (after the first {statistics.mean(objectives[1:]):.4f}), "
              f"detail last/first {detail(results[-1]) / detail(results[0]):.3f}, {strip(results[-1], clip)}"
              f"{seconds:.1f} s a frame", flush=True)


def strip(result: torch.Tensor, clip: Clip) -> str:
    """The uncovered strip's change across over down, and the rest's, where the clip uncovers one."""
    if not clip.uncovered:
        return ""
    width = clip.uncovered
    return (f"uncovered strip across/down {across_over_down(result[..., 2:-2, -width:-1]):.3f} (the rest "
            f"{across_over_down(result[..., 2:-2, 1:-width]):.3f}), ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", default="pan,still,object,zoom")
    parser.add_argument("--temporal", default=f"{RunConfig.temporal_weight:g}",
                        help="--temporal-weight values to run with the flow, such as 30,100,300")
    parser.add_argument("--no-baselines", action="store_true", help="only the shift and the flow with each "
                        "--temporal weight")
    parser.add_argument("--carried", default="", help="also the flow's results moved as before session 32: "
                        "bilinear, edge or both (bilinear,edge)")
    parser.add_argument("--zoom", type=float, default=ZOOM, help="the zoom clip's magnification a frame")
    parser.add_argument("--model-temporal", default=f"{MODEL_TEMPORAL_WEIGHT:g}",
                        help="--temporal-weight values to hold the network's frames with, such as 1,2,3")
    parser.add_argument("--models-only", action="store_true", help="only the network, alone and held")
    parser.add_argument("--model-trust", default="matching", help="where the network's frames are held: "
                        "matching (the moved photo matches the frame, now), both-ways (the flows there and back "
                        "agree, as first written) or both (matching,both-ways)")
    parser.add_argument("--first-longer", default="", help="instead: the pan with --init previous, the first "
                        "frame's last scale run each of these many times as long, such as 1,2,4")
    args = parser.parse_args()
    device = setup_device(args.device)
    print(f"device: {device_name(device)}; {args.frames} frames at {args.size} px, tubingen x starry_night")
    photo = load_image(SHARED / "content" / "tubingen.jpg").rgb
    style = load_image(SHARED / "styles" / "starry_night.jpg")
    size = fit_long_side(*photo.shape[-2:], args.size)
    if args.first_longer:
        print(f"pan {PAN} px a frame, --init previous:")
        first_longer(pan_clip(photo, size, args.frames, PAN), style, args.size, args.device,
                     [int(f) for f in args.first_longer.split(",")])
        return
    clips = {"pan": (f"pan {PAN} px a frame", lambda: pan_clip(photo, size, args.frames, PAN)),
             "still": ("still camera", lambda: pan_clip(photo, size, args.frames, 0)),
             "object": (f"an object crossing, {OBJECT_SPEED} px a frame", lambda: object_clip(
                 photo, load_image(SHARED / "content" / "golden_gate.jpg").rgb, size, args.frames)),
             "zoom": (f"zoom {args.zoom:g}x a frame", lambda: zoom_clip(photo, size, args.frames, args.zoom))}
    for key in args.clips.split(","):
        name, make = clips[key]
        compare(name, make(), style, args.size, args.device, [float(w) for w in args.temporal.split(",")],
                not args.no_baselines, tuple(filter(None, args.carried.split(","))),
                [float(w) for w in filter(None, args.model_temporal.split(","))], args.models_only,
                tuple(args.model_trust.split(",")))


if __name__ == "__main__":
    main()
