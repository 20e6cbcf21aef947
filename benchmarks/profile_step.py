"""Where an iterative step's time goes: torch.profiler over a few steps of the default run's
last scale (memory full), the operators that take most time, and per step how many operators,
GPU kernels and host synchronisations it makes.

    python benchmarks/profile_step.py [--device cuda] [--size 512] [--steps 5] [--rows 15]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from common import REPO, SHARED, device_name, profile_counts, setup_device
from stylize.config import BackboneConfig, RunConfig
from stylize.features import load_extractor
from stylize.imageio import fit_long_side, load_image
from stylize.losses import required_layers
from stylize.optimize import LBFGS_HISTORY, ScaleOptimizer, ScaleProblem

# Runtime calls that wait for the GPU (or copy its results to the host, which waits too).
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaEventSynchronize")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    device = setup_device(args.device)
    content_path, style_path = SHARED / "content" / "tubingen.jpg", SHARED / "styles" / "starry_night.jpg"
    if not content_path.exists():
        content_path, style_path = REPO / "samples" / "chelsea.jpg", REPO / "samples" / "swirls.jpg"
    config = RunConfig(size=args.size)
    extractor = load_extractor(BackboneConfig(), required_layers(config.loss), device)
    content, style = load_image(content_path).rgb.to(device), load_image(style_path).rgb.to(device)
    problem = ScaleProblem(extractor, config, content, [style], fit_long_side(*content.shape[-2:], args.size))
    run = ScaleOptimizer(problem, config, problem.content)
    for _ in range(LBFGS_HISTORY + 5):
        run.step()
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * (device.type == "cuda")
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            run.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.steps} steps at {args.size} px, "
          f"precision {'bfloat16' if problem.half else 'float32'}")
    per_step = lambda n: n / args.steps  # noqa: E731
    operators, launches = profile_counts(events)
    syncs = {e.key: e.count for e in events if e.key in SYNCS}
    scalars = sum(e.count for e in events if e.key == "aten::_local_scalar_dense")
    print(f"per step: {per_step(operators):.0f} aten operators (nested ones counted too), {per_step(launches):.0f} "
          f"kernel launches, {per_step(scalars):.0f} values read back to the host; "
          + ", ".join(f"{k} {per_step(v):.0f}" for k, v in syncs.items()))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=40))
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
