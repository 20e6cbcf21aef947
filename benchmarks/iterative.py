"""Iterative method: per-iteration overhead, and time to quality against the classic recipe.

Prints, measured side by side in one run on one device:
1. seconds per iteration of the optimiser at 256 and 512 px next to the bare backbone
   forward+backward at the same size (the overhead ratio);
2. wall time and final objective (content + style at 512 px, same backbone and layers) of the
   default `stylize run` schedule next to a classic single-scale 500-iteration L-BFGS run.

    python benchmarks/iterative.py [--device cuda] [--classic-iterations 500]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from stylize.config import BackboneConfig, LossConfig, RunConfig
from stylize.device import resolve_device
from stylize.features import load_extractor
from stylize.imageio import fit_long_side, load_image, resize
from stylize.losses import required_layers
from stylize.optimize import ScaleProblem, ScaleOptimizer, run_iterative

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def overhead(extractor, config, content, style, long_side, device, repeats) -> tuple[float, float]:
    size = fit_long_side(*content.shape[-2:], long_side)
    problem = ScaleProblem(extractor, config, content, [style], size)
    image = problem.content.clone().requires_grad_(True)

    def bare() -> None:
        feats = extractor(image)
        torch.autograd.backward(list(feats.values()), [torch.ones_like(f) for f in feats.values()])

    run = ScaleOptimizer(problem, config, problem.content)
    return timed(run.step, device, repeats), timed(bare, device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--content", type=Path, default=SHARED / "content" / "tubingen.jpg")
    parser.add_argument("--style", type=Path, default=SHARED / "styles" / "starry_night.jpg")
    parser.add_argument("--classic-iterations", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.content.exists():  # a machine without ../shared: use the bundled samples
        args.content, args.style = REPO / "samples" / "chelsea.jpg", REPO / "samples" / "swirls.jpg"
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.content.name} + {args.style.name}")
    default = RunConfig()
    extractor = load_extractor(BackboneConfig(), required_layers(default.loss), device)
    content = load_image(args.content).rgb.to(device)
    style = load_image(args.style).rgb.to(device)

    print("\n1. per-iteration overhead (optimiser step vs bare VGG forward+backward)")
    for side in (256, 512):
        step, bare = overhead(extractor, default, content, style, side, device, args.repeats)
        print(f"   {side} px: step {step * 1000:8.1f} ms   bare {bare * 1000:8.1f} ms   ratio {step / bare:.3f}")

    print("\n2. time to quality at 512 px")
    classic = RunConfig(scales=1, iterations=(args.classic_iterations,))
    rows = []
    for label, config in (("default", default), (f"classic {args.classic_iterations}x L-BFGS", classic)):
        sync(device)
        start = time.perf_counter()
        result = run_iterative(content, [style], config, extractor)
        sync(device)
        seconds = time.perf_counter() - start
        size = tuple(result.image.shape[-2:])
        with torch.no_grad():
            parts = ScaleProblem(extractor, default, content, [style], size)(result.image.to(device))
        objective = float(parts.content + parts.style)
        rows.append((label, seconds, objective))
        print(f"   {label:<24} {seconds:8.1f} s   objective {objective:.4f} "
              f"(content {float(parts.content):.4f}, style {float(parts.style):.4f})")
    (_, t_default, j_default), (_, t_classic, j_classic) = rows
    print(f"\n   time ratio default/classic: {t_default / t_classic:.3f} (aim <= 0.25); "
          f"objective ratio: {j_default / j_classic:.3f} (aim <= 1.0)")


if __name__ == "__main__":
    main()
