"""Where a training step's time goes: is `stylize train` waiting on its photos, on launching
kernels, or on the GPU's arithmetic?

    python benchmarks/profile_train.py [--device cuda] [--steps 20] [--image-size 256] [--batch-size 4]

Runs `stylize.train.train` (the classic network, as the training benchmark trains it) and
profiles --steps of its steps after the first four (the start, worker processes, style targets,
the CUDA graph's warm-up and recording, and model files left out); the device is idle at both
ends of them. Per step: the wall time, the time the loop waited for the next batch (the
DataLoader's `__next__`), the aten operators and kernel launches, and on a GPU the kernels' own
time (the GPU busy: its share of the wall time says how far the step is from being bound by the
device). Once with the reference's objective (--shift-weight 0) and once with stylize's default
shift term; on a GPU with each step replayed as a CUDA graph (the default), then eager.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from common import device_name, profile_counts, setup_device, sync
from train import photos_and_style
from stylize.config import BackboneConfig, TrainConfig
from stylize.cudagraph import WARM_UP
from stylize.losses import LossParts
from stylize.train import prepare_training, train
from stylize.trainstep import TrainStep
from stylize.transformer import CLASSIC


# Steps before the measured ones: the first (kernels chosen, memory cached), and on a GPU the
# eager warm-up steps and the step that records the CUDA graph (stylize.trainstep).
SKIPPED = WARM_UP + 1


@dataclasses.dataclass
class Step:
    """One step's average over the measured ones."""
    wall: float  # seconds, from an idle device to an idle device
    loader: float  # seconds waiting in the DataLoader's __next__
    operators: float
    launches: float
    kernels: float  # seconds of GPU kernel time


def profiled(config: TrainConfig, steps: int, device: torch.device, folder: Path) -> Step:
    """``steps`` steps of `stylize train` measured after SKIPPED others, under torch.profiler."""
    photos, style = photos_and_style(folder)
    job = prepare_training(style, photos, folder / "p.pt", dataclasses.replace(config, steps=SKIPPED + steps + 1),
                           CLASSIC, BackboneConfig(), str(device), overwrite=True)
    marks: list[float] = []
    averages = []
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * (device.type == "cuda")
    with profile(activities=activities, schedule=schedule(wait=SKIPPED - 1, warmup=1, active=steps),
                 on_trace_ready=lambda prof: averages.append(prof.key_averages())) as prof:

        class Marked(TrainStep):  # the end of a training step: the profiler's schedule moves on
            def __call__(self, batch: torch.Tensor, step: int) -> LossParts:
                parts = super().__call__(batch, step)
                if len(marks) in (SKIPPED - 1, SKIPPED + steps - 1):  # the device idle at both ends
                    sync(device)
                marks.append(time.perf_counter())
                prof.step()
                return parts

        with mock.patch("stylize.train.TrainStep", Marked):
            train(job)
    events = averages[0]
    operators, launches = profile_counts(events)
    return Step(
        wall=(marks[SKIPPED + steps - 1] - marks[SKIPPED - 1]) / steps,
        loader=sum(e.cpu_time_total for e in events if "DataLoader" in e.key and "__next__" in e.key) / 1e6 / steps,
        operators=operators / steps,
        launches=launches / steps,
        kernels=sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA") / 1e6 / steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    device = setup_device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; classic network, {args.batch_size} crops of "
          f"{args.image_size} px; per step, from {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        # On a GPU each step replayed as a CUDA graph (the default), then eager, as before it.
        graphs = (True, False) if device.type == "cuda" else (False,)
        for graph, shift in itertools.product(graphs, (0.0, TrainConfig().shift_weight)):
            config = TrainConfig(image_size=args.image_size, batch_size=args.batch_size, checkpoint_every=10**6,
                                 shift_weight=shift, cuda_graph=graph)
            step = profiled(config, args.steps, device, Path(tmp))
            gpu = f"; GPU kernels {step.kernels * 1000:.2f} ms ({step.kernels / step.wall:.0%} of the wall time)" \
                if device.type == "cuda" else ""
            print(f"--shift-weight {shift:g}{', CUDA graph' if graph else ''}: {step.wall * 1000:.2f} ms a step "
                  f"({args.batch_size / step.wall:.1f} images/s), waiting for photos {step.loader * 1000:.2f} ms "
                  f"({step.loader / step.wall:.0%}); {step.operators:.0f} aten operators (nested ones too), "
                  f"{step.launches:.0f} kernel launches{gpu}")


if __name__ == "__main__":
    main()
