"""L-BFGS's memory and restart rule: the default run's final objective on several pairs.

Runs the default `stylize run` at 512 px on each content/style pair under four L-BFGS
settings and prints each final objective (content + style at 512 px, evaluated in float32),
the restarts it made and its time:

- stylize: 20 remembered pairs, restarted only when it stops moving (no descent direction);
- 50 pairs with the same rule;
- 20 pairs, restarted after every uphill step (the rule before);
- before: 50 pairs, restarted after every uphill step (stylize until 2026-11-27).

    python benchmarks/lbfgs_policy.py [--device cuda] [--pairs tubingen+starry_night,...] [--photos 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from common import SHARED, add_pair_options, content_style_pairs, final_objective, setup_device, sync
import stylize.optimize as optimize
from stylize.config import BackboneConfig, RunConfig
from stylize.device import reuse_freed_memory
from stylize.features import load_extractor
from stylize.imageio import load_image
from stylize.losses import required_layers


class CountingOptimizer(optimize.ScaleOptimizer):
    """stylize's ScaleOptimizer, counting restarts; ``uphill`` restarts it after any uphill step
    (the rule before), otherwise stylize's own rule."""

    uphill = False
    restarts = 0

    def _new_optimizer(self) -> torch.optim.Optimizer:
        if hasattr(self, "optimizer"):  # not the first one
            CountingOptimizer.restarts += 1
        return super()._new_optimizer()

    def step(self) -> None:
        if not self.uphill:
            super().step()
            return
        before = self.last_losses.get("total", math.inf)
        self._evaluations = 0
        self.optimizer.step(self._closure)
        if self.last_losses["total"] >= before:
            self.optimizer = self._new_optimizer()
        with torch.no_grad():
            self.image.clamp_(0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    add_pair_options(parser)
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does
    device = setup_device(args.device)
    config = RunConfig(size=512)
    extractor = load_extractor(BackboneConfig(), required_layers(config.loss), device)
    pairs = content_style_pairs(args)
    settings = {"stylize (20, when stuck)": (optimize.LBFGS_HISTORY, False), "50, when stuck": (50, False),
                "20, after uphill": (optimize.LBFGS_HISTORY, True), "before (50, after uphill)": (50, True)}
    history = optimize.LBFGS_HISTORY
    optimize.ScaleOptimizer = CountingOptimizer  # run_iterative builds its optimisers from the module
    ratios: dict[str, list[float]] = {name: [] for name in settings}
    print(f"default run at 512 px; objective in float32 (lower is better); torch {torch.__version__}")
    for content_path, style in pairs:
        content = load_image(content_path).rgb.to(device)
        style_image = load_image(SHARED / "styles" / f"{style}.jpg").rgb.to(device)
        print(f"{content_path.stem} + {style}:")
        first = None
        for name, (history_size, uphill) in settings.items():
            optimize.LBFGS_HISTORY, CountingOptimizer.uphill, CountingOptimizer.restarts = history_size, uphill, 0
            sync(device)
            start = time.perf_counter()
            image = optimize.run_iterative(content, [style_image], config, extractor).image
            sync(device)
            seconds = time.perf_counter() - start
            objective = final_objective(extractor, config, content, [style_image], image.to(device))
            first = first or objective
            ratios[name].append(objective / first)
            print(f"   {name:28s} objective {objective:.4f} ({objective / first:.3f})   restarts "
                  f"{CountingOptimizer.restarts}   {seconds:5.1f} s", flush=True)
        optimize.LBFGS_HISTORY = history
    print("geometric mean of each setting's objective over stylize's:")
    for name, values in ratios.items():
        print(f"   {name:28s} {statistics.geometric_mean(values):.3f}   worst {max(values):.3f}   "
              f"best {min(values):.3f}")


if __name__ == "__main__":
    main()
