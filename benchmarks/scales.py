"""How many scales should the automatic schedule have? Final objectives over several pairs.

Runs `stylize run` at one --size on each content/style pair with each schedule given (a number
of scales, each twice the last, and the iterations of each) and prints each final objective
(content + style at the output's size, evaluated in float32) and time, as ratios to the first
schedule's, then their geometric means, worst and best.

    python benchmarks/scales.py [--device cuda] [--size 512] [--schedules "2:100,50;3:100,100,50"]
                                [--pairs tubingen+starry_night,...] [--photos 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import SHARED, add_pair_options, content_style_pairs, final_objective, setup_device, sync
from stylize.config import BackboneConfig, RunConfig
from stylize.device import reuse_freed_memory
from stylize.features import load_extractor
from stylize.imageio import load_image
from stylize.losses import required_layers
from stylize.optimize import run_iterative


def parse(text: str, size: int) -> dict[str, RunConfig]:
    """``"2:100,50;3:100,100,50"`` -> one RunConfig per schedule, named as given."""
    configs = {}
    for item in text.split(";"):
        count, iterations = item.split(":")
        configs[item] = RunConfig(size=size, scales=int(count), iterations=tuple(int(n) for n in iterations.split(",")))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--schedules", default="2:100,50;3:100,100,50")
    add_pair_options(parser)
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does
    device = setup_device(args.device)
    configs = parse(args.schedules, args.size)
    extractor = load_extractor(BackboneConfig(), required_layers(RunConfig().loss), device)
    pairs = content_style_pairs(args)
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    print(f"--size {args.size}; objective in float32 (lower is better); torch {torch.__version__}")
    for content_path, style in pairs:
        content = load_image(content_path).rgb.to(device)
        style_image = load_image(SHARED / "styles" / f"{style}.jpg").rgb.to(device)
        print(f"{content_path.stem} + {style}:")
        first: tuple[float, float] | None = None
        for name, config in configs.items():
            sync(device)
            start = time.perf_counter()
            image = run_iterative(content, [style_image], config, extractor).image.to(device)
            sync(device)
            seconds = time.perf_counter() - start
            objective = final_objective(extractor, config, content, [style_image], image)
            first = first or (objective, seconds)
            ratios[name].append((objective / first[0], seconds / first[1]))
            print(f"   {name:24s} objective {objective:.4f} ({objective / first[0]:.3f})   {seconds:6.1f} s "
                  f"({seconds / first[1]:.2f})", flush=True)
    print(f"geometric means over the first schedule's ({len(pairs)} pairs):")
    for name, values in ratios.items():
        objectives = [v[0] for v in values]
        print(f"   {name:24s} objective {statistics.geometric_mean(objectives):.3f} (worst {max(objectives):.3f}, "
              f"best {min(objectives):.3f})   time {statistics.geometric_mean([v[1] for v in values]):.2f}")


if __name__ == "__main__":
    main()
