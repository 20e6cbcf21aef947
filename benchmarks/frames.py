"""Video frames through the iterative method: each frame on its own (--init content, the
default) against --init previous (each frame from the previous frame's result moved with the
camera, at full size only), side by side on the same clips.

    python benchmarks/frames.py [--size 256] [--frames 8] [--device cpu]

The clips are made here from a shared photo: a pan (the view moves 3 px a frame) and a still
camera, each frame with its own sensor noise (sigma 3/255). Printed per clip and mode (and for
the bundled starry_night model, one pass a frame): the temporal error, the mean absolute difference between each result and the one before moved with
the camera (over the pixels both show; the input frames' own, noise only, beside it), the mean
final objective of the frames (each scored by its run) and the seconds a frame.
Reads ../shared/data (STYLIZE_SHARED to point elsewhere)."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from common import SHARED, device_name, setup_device
from stylize.config import BackboneConfig, InitKind, RunConfig
from stylize.imageio import LoadedImage, fit_long_side, load_image, resize
from stylize import job
from stylize.job import Fast, Frame, Iterative

PAN = 3  # px a frame, at the run's size


def clip(photo: torch.Tensor, size: tuple[int, int], frames: int, pan: int) -> list[torch.Tensor]:
    """``frames`` views of ``photo`` of ``size``, the view moving ``pan`` px right a frame, noisy."""
    height, width = size
    room = fit_long_side(*photo.shape[-2:], int(max(height, width) * 1.25))
    big = resize(photo, room)
    generator = torch.Generator().manual_seed(0)
    views = []
    for t in range(frames):
        view = big[..., 8:8 + height, 8 + pan * t:8 + pan * t + width]
        views.append((view + torch.randn(view.shape, generator=generator) * 3 / 255).clamp(0, 1))
    return views


def temporal_error(images: list[torch.Tensor], pan: int) -> float:
    """Mean |frame t - frame t-1 moved with the camera| over the pixels both show."""
    return statistics.mean(float((b[..., :, :b.shape[-1] - pan] - a[..., :, pan:]).abs().mean())
                           for a, b in zip(images, images[1:]))


def run(frames: list[torch.Tensor], style: LoadedImage, init: InitKind, size: int,
        device: str) -> tuple[list[torch.Tensor], list[float], float]:
    stylizer = Iterative(RunConfig(size=size, init=init), BackboneConfig(), device)
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
        objectives.append(result.losses["total"])
    return results, objectives, (time.perf_counter() - start) / len(frames)


def pair_errors(images: list[torch.Tensor], pan: int) -> list[float]:
    """|frame t - frame t-1 moved with the camera| for each pair in turn."""
    return [float((b[..., :, :b.shape[-1] - pan] - a[..., :, pan:]).abs().mean()) for a, b in zip(images, images[1:])]


def first_longer(frames: list[torch.Tensor], style: LoadedImage, size: int, device: str, factors: list[int]) -> None:
    """--init previous with the first frame's full-size scale run each of ``factors`` times as
    long (stylize's FIRST_FRAME_ITERATIONS): the change between each pair of frames in turn and
    each frame's objective."""
    for factor in factors:
        job.FIRST_FRAME_ITERATIONS = factor
        results, objectives, seconds = run(frames, style, InitKind.previous, size, device)
        print(f"  first frame x{factor}: pairs {' '.join(f'{e:.4f}' for e in pair_errors(results, PAN))}; "
              f"objectives {' '.join(f'{o:.3f}' for o in objectives)}; {seconds:.1f} s a frame", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--device", default="cpu")
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
        first_longer(clip(photo, size, args.frames, PAN), style, args.size, args.device,
                     [int(f) for f in args.first_longer.split(",")])
        return
    for name, pan in (("pan 3 px a frame", PAN), ("still camera", 0)):
        frames = clip(photo, size, args.frames, pan)
        print(f"{name}: the input frames' own temporal error {temporal_error(frames, pan):.4f}")
        model = Fast("starry_night", args.device)
        results = [model.run([frame])[0] for frame in frames]
        print(f"  --model starry_night (one pass a frame) temporal error {temporal_error(results, pan):.4f}")
        for init in (InitKind.content, InitKind.previous):
            results, objectives, seconds = run(frames, style, init, args.size, args.device)
            print(f"  --init {init.value:<8} temporal error {temporal_error(results, pan):.4f}, objective "
                  f"{statistics.mean(objectives):.4f} (frames after the first {statistics.mean(objectives[1:]):.4f}), "
                  f"{seconds:.1f} s a frame", flush=True)


if __name__ == "__main__":
    main()
