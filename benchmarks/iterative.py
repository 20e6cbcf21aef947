"""Iterative method: per-iteration overhead, and time to quality against the classic recipe.

Prints, measured side by side in one run on one device:
1. seconds per iteration of the optimiser at 256 and 512 px (with L-BFGS's memory full) next
   to the bare backbone forward+backward at the same size and precision, timed alternately (the
   overhead ratio; in float32, and where the default is --half also in bfloat16), the step as
   stylize took it before (on a GPU without the CUDA graph; and with torch.optim.LBFGS, before
   stylize.lbfgs, without the graph), and the share of the Gram products in the multiply-adds
   (the ratio's floor);
2. wall time and final objective (content + style at 512 px, same backbone and layers, always
   evaluated in float32) of the default `stylize run` (its schedule and precision; run before
   and after the classic run, their mean compared), and of other candidate schedules, next to
   the classic recipe: one single-scale L-BFGS run of 500 iterations with torch's strong-Wolfe
   line search (history 100, torch's default tolerances), pixels free, clamped to [0,1] at the
   end, in float32.

    python benchmarks/iterative.py [--device cuda] [--classic-iterations 500]
        [--schedules "128,256,512:300,150,25;256,512:200,40"] [--overhead-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from common import REPO, SHARED, alternate, backbone_pass, device_name, setup_device, sync
from stylize.config import BackboneConfig, RunConfig
from stylize.device import resolve_half, reuse_freed_memory
from stylize.features import ARCHITECTURES, layer_names, load_extractor
from stylize.imageio import fit_long_side, load_image
from stylize.lbfgs import torch_equivalent
from stylize.losses import required_layers, style_layer_weights
from stylize.optimize import LBFGS_HISTORY, ScaleProblem, ScaleOptimizer, plan_schedule, run_iterative


class TorchLBFGSOptimizer(ScaleOptimizer):
    """The optimiser step as stylize ran it before stylize.lbfgs: torch.optim.LBFGS, the same
    steps with a host synchronisation per coefficient of its two-loop recursion."""

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch_equivalent(self.image, LBFGS_HISTORY)


def overhead(extractor, config, content, style, long_side, device, repeats) -> dict[str, float]:
    """Median seconds of an optimiser step (after as many steps as L-BFGS remembers), of a bare
    forward+backward in the same precision and of the step as stylize took it before (on a GPU
    without the CUDA graph, "eager"; and with torch's L-BFGS as well, "torch"), timed
    alternately, so that the machine's drifts hit them alike."""
    size = fit_long_side(*content.shape[-2:], long_side)
    problem = ScaleProblem(extractor, config, content, [style], size)
    image = problem.content.clone().requires_grad_(True)
    eager = dataclasses.replace(config, cuda_graph=False)
    kinds = {"step": (ScaleOptimizer, config), "torch": (TorchLBFGSOptimizer, eager)}
    if device.type == "cuda":
        kinds["eager"] = (ScaleOptimizer, eager)
    contenders = {"bare": lambda: backbone_pass(extractor, image, device, problem.half)}
    for name, (kind, kind_config) in kinds.items():
        run = kind(problem, kind_config, problem.content)
        for _ in range(LBFGS_HISTORY):  # a steady state: L-BFGS's memory full, as in most of a run
            run.step()
        contenders[name] = run.step
    return alternate(contenders, device, repeats)


def gram_share(config: RunConfig) -> float:
    """Multiply-adds of the Gram matrices (forward and one-product backward) over those of the
    convolutions (forward and input-gradient backward), per pixel: the least the optimiser's
    step can cost over the bare backbone if the products ran as fast as the convolutions."""
    names = layer_names("vgg16")
    style = set(style_layer_weights(config.loss))
    deepest = max(names.index(n) for n in required_layers(config.loss))
    conv = gram = 0.0
    stride, channels_in, index = 1, 3, 0
    for item in ARCHITECTURES["vgg16"]:
        if index > deepest:
            break
        if item == "M":
            stride, index = stride * 2, index + 1
            continue
        conv += 9 * channels_in * int(item) / stride**2
        if names[index + 1] in style:
            gram += int(item) ** 2 / stride**2
        channels_in, index = int(item), index + 2
    return 2 * gram / (2 * conv)


def classic_run(problem: ScaleProblem, iterations: int) -> tuple[torch.Tensor, int, int]:
    """The classic recipe; returns the clamped image, iterations and evaluations done."""
    image = problem.content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad(set_to_none=True)
        loss = problem(image).total
        loss.backward()
        return loss

    optimizer.step(closure)
    done = optimizer.state[optimizer.param_groups[0]["params"][0]]["n_iter"]
    return image.detach().clamp(0, 1), done, evaluations


def parse_schedules(text: str) -> list[RunConfig]:
    configs = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        sizes, iterations = item.split(":")
        sizes_t = tuple(int(v) for v in sizes.split(","))
        counts = tuple(int(v) for v in iterations.split(","))
        configs.append(RunConfig(size=sizes_t[-1], scales=sizes_t, iterations=counts))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--content", type=Path, default=SHARED / "content" / "tubingen.jpg")
    parser.add_argument("--style", type=Path, default=SHARED / "styles" / "starry_night.jpg")
    parser.add_argument("--classic-iterations", type=int, default=500)
    parser.add_argument("--schedules", default="", help="more schedules to time, 'sizes:iterations;...'")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=512, help="long side of the runs compared")
    parser.add_argument("--overhead-only", action="store_true", help="print part 1 only")
    args = parser.parse_args()
    if not args.content.exists():  # a machine without ../shared: use the bundled samples
        args.content, args.style = REPO / "samples" / "chelsea.jpg", REPO / "samples" / "swirls.jpg"
    reuse_freed_memory()  # as the command line does
    device = setup_device(args.device)
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}; {args.content.name} + {args.style.name}; the default run's "
          f"precision: {'bfloat16 (--half, the default here)' if resolve_half(device, None) else 'float32'}")
    default = RunConfig(size=args.size)
    extractor = load_extractor(BackboneConfig(), required_layers(default.loss), device)
    content = load_image(args.content).rgb.to(device)
    style = load_image(args.style).rgb.to(device)

    half = resolve_half(device, None)
    full = dataclasses.replace(default, half=False)
    print(f"\n1. per-iteration overhead (optimiser step vs bare VGG forward+backward in the same precision, medians "
          f"of {args.repeats} alternate runs); the Gram products are {gram_share(default):.1%} of the convolutions' "
          f"multiply-adds")
    for label, config in [("float32", full)] + [("default: --half", default)] * half:
        for side in (args.size // 2, args.size):
            times = overhead(extractor, config, content, style, side, device, args.repeats)
            step, bare = times["step"], times["bare"]
            before = f"without the graph {times['eager'] * 1000:.1f} ms, " if "eager" in times else ""
            print(f"   {label}, {side} px: step {step * 1000:8.1f} ms   bare {bare * 1000:8.1f} ms   "
                  f"ratio {step / bare:.3f}   ({before}with torch's L-BFGS {times['torch'] * 1000:.1f} ms)")
    if args.overhead_only:
        return

    # The classic run and every objective are float32, whatever the default run's precision.
    size = fit_long_side(*content.shape[-2:], default.size)
    problem = ScaleProblem(extractor, full, content, [style], size)

    def objective(image: torch.Tensor) -> tuple[float, float, float]:
        with torch.no_grad():
            parts = problem(image.to(device))
        return float(parts.content + parts.style), float(parts.content), float(parts.style)

    print(f"\n2. time to quality at {size[1]}x{size[0]}")

    def timed_run(config: RunConfig) -> tuple[float, torch.Tensor]:
        sync(device)
        start = time.perf_counter()
        result = run_iterative(content, [style], config, extractor)
        sync(device)
        return time.perf_counter() - start, result.image

    # The default runs once before and once after the classic run, and is compared with their
    # mean: this machine's speed drifts by several per cent over the quarter hour it takes.
    t_before, _ = timed_run(default)
    sync(device)
    start = time.perf_counter()
    image, iterations, evaluations = classic_run(problem, args.classic_iterations)
    sync(device)
    t_classic = time.perf_counter() - start
    j_classic, c, s = objective(image)
    print(f"   classic: {iterations} L-BFGS iterations (strong Wolfe, {evaluations} evaluations) {t_classic:8.1f} s   "
          f"objective {j_classic:.4f} (content {c:.4f}, style {s:.4f})")
    min_side = 16
    for label, config in [("default", default)] + [("candidate", c) for c in parse_schedules(args.schedules)]:
        plan = plan_schedule(*content.shape[-2:], config, min_side)
        described = " + ".join(f"{n}@{max(hw)}" for hw, n in plan)
        seconds, result = timed_run(config)
        timing = f"{seconds:8.1f} s"
        if label == "default":
            timing = (f"{t_before:.1f} s before the classic run, {seconds:.1f} s after, "
                      f"mean {(t_before + seconds) / 2:.1f} s")
            seconds = (t_before + seconds) / 2
        j, c, s = objective(result)
        print(f"   {label} {described}: {timing} = {seconds / t_classic:.3f} of classic (aim <= 0.125)   "
              f"objective {j:.4f} = {j / j_classic:.3f} of classic (aim <= 1) (content {c:.4f}, style {s:.4f})")


if __name__ == "__main__":
    main()
