"""Which coarse-to-fine schedule reaches the classic run's objective soonest?

For each pair, runs the classic single-scale 500-iteration L-BFGS and several two-scale
schedules at 512 px, and prints each final objective (content + style at 512 px) next to the
schedule's cost in full-size-iteration equivalents (a half-size iteration costs about a quarter,
0.24 measured on the CPU). Meant for a GPU, where it takes about a minute.

    python benchmarks/schedules.py [--device cuda]
"""

from __future__ import annotations

import argparse

import torch

from common import SHARED, setup_device
from stylize.config import BackboneConfig, RunConfig
from stylize.features import load_extractor
from stylize.imageio import load_image
from stylize.losses import required_layers
from stylize.optimize import ScaleProblem, run_iterative

PAIRS = [("tubingen", "starry_night"), ("golden_gate", "the_scream"), ("tubingen", "shipwreck")]
SCHEDULES = [(150, 60), (100, 80), (150, 80), (200, 70), (60, 100), (100, 100), (300, 60)]
HALF_SIZE_COST = 0.24  # seconds per iteration at 256 px / at 512 px, measured on the 2-core CPU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = setup_device(args.device)
    base = RunConfig()
    extractor = load_extractor(BackboneConfig(), required_layers(base.loss), device)
    for content_name, style_name in PAIRS:
        content = load_image(SHARED / "content" / f"{content_name}.jpg").rgb.to(device)
        style = load_image(SHARED / "styles" / f"{style_name}.jpg").rgb.to(device)

        def objective(config: RunConfig) -> float:
            image = run_iterative(content, [style], config, extractor).image.to(device)
            with torch.no_grad():
                parts = ScaleProblem(extractor, base, content, [style], tuple(image.shape[-2:]))(image)
            return float(parts.content + parts.style)

        classic = objective(RunConfig(scales=1, iterations=(500,)))
        print(f"{content_name}+{style_name}: classic 500 -> {classic:.4f} (cost 500)")
        for coarse, fine in SCHEDULES:
            j = objective(RunConfig(scales=2, iterations=(coarse, fine)))
            cost = coarse * HALF_SIZE_COST + fine
            print(f"   {coarse:>3},{fine:<3} -> {j:.4f}  ratio {j / classic:.3f}  cost {cost:5.0f} "
                  f"({cost / 500:.3f} of classic)")


if __name__ == "__main__":
    main()
