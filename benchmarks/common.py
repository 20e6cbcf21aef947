"""What the benchmark scripts share: where the data is and the content/style pairs they run, a run's
final objective, the device set up as the command line sets it up, the network with torch's own
padding or instance norm, timing on a device (alone or alternating), a bare backbone pass, counts
from a profile, the device's name, running a script in a child process, this process's peak
memory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ContextManager
from unittest.mock import patch

import torch

from stylize import deterministic, transformer
from stylize.config import RunConfig
from stylize.device import autocast, make_deterministic, resolve_device
from stylize.optimize import ScaleProblem

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository; the GPU script points STYLIZE_SHARED at its own copy.
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared" / "data"))


PAIRS = "tubingen+starry_night,tubingen+the_scream,tubingen+shipwreck,golden_gate+starry_night," \
        "golden_gate+the_scream,golden_gate+shipwreck"
STYLES = ["starry_night", "the_scream", "shipwreck"]


def add_pair_options(parser: argparse.ArgumentParser) -> None:
    """--pairs and --photos, for scripts that run several content/style pairs."""
    parser.add_argument("--pairs", default=PAIRS, help="content+style names in ../shared/data, comma-separated")
    parser.add_argument("--photos", type=int, default=2, help="also this many training photos, one style each")


def content_style_pairs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """(content path, style name) for --pairs, then --photos training photos spread over the
    folder, each with one of the three styles in turn."""
    pairs = [(SHARED / "content" / f"{c}.jpg", s) for c, s in (p.split("+") for p in args.pairs.split(","))]
    photos = sorted((SHARED / "photos").glob("*.jpg"))
    step = max(1, len(photos) // max(1, args.photos))
    return pairs + [(photos[i * step], STYLES[i % 3]) for i in range(args.photos) if i * step < len(photos)]


def final_objective(extractor: torch.nn.Module, config: RunConfig, content: torch.Tensor, styles: list[torch.Tensor],
                    image: torch.Tensor) -> float:
    """Content + style of a run's result at its own size, in float32 whatever precision the run
    had: the measure by which the schedule benchmarks compare runs."""
    with torch.no_grad():
        parts = ScaleProblem(extractor, dataclasses.replace(config, half=False), content, styles,
                             tuple(image.shape[-2:]))(image)
    return float(parts.content + parts.style)


def setup_device(name: str) -> torch.device:
    """``--device`` resolved as stylize resolves it, and set up as its commands set it up: on CUDA,
    cuDNN limited to deterministic kernels (what makes a run reproducible), so that a timing is
    the tool's. (The training benchmark's reference loop runs as the recipe does, without it.)"""
    device = resolve_device(name)
    make_deterministic(device)
    return device


def torch_padding() -> ContextManager:
    """torch's own padding and repeats in the network, as before stylize.deterministic."""
    return patch.object(deterministic, "_fixed_order_wanted", lambda x: False)


def torch_instance_norm() -> ContextManager:
    """torch's own instance norm in the network, where stylize's runs as a group norm in float32."""
    return patch.object(transformer, "_group_norm_wanted", lambda x: False)


def sync(device: torch.device) -> None:
    """Wait for the GPU, so that a timer measures the work and not its queueing."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warm_up: bool = True) -> float:
    """Seconds per call of ``fn``, after one warm-up call (unless told there is none to make)."""
    if warm_up:
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def alternate(contenders: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds per call of each contender, timed in turn ``repeats`` times (after one
    warm-up call each), so that the machine's drifts hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(timed(fn, device, 1, warm_up=not times[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def backbone_pass(extractor: torch.nn.Module, image: torch.Tensor, device: torch.device, half: bool = False) -> None:
    """One bare forward+backward of the feature extractor (every returned layer gets a gradient of
    ones), in float32 or under --half's autocast: what an optimiser step is compared with."""
    with autocast(device, half):
        feats = extractor(image)
    torch.autograd.backward(list(feats.values()), [torch.ones_like(f) for f in feats.values()])


# The runtime calls that launch a kernel, as torch.profiler names them.
KERNEL_LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC")


def profile_counts(events) -> tuple[int, int]:
    """The aten operators (nested ones counted too) and kernel launches in a profile's
    ``key_averages()``."""
    return (sum(e.count for e in events if e.key.startswith("aten::")),
            sum(e.count for e in events if e.key in KERNEL_LAUNCHES))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def run_child(script: str, args: list[str]) -> object:
    """Run ``script`` with ``args`` in a fresh Python process and return the JSON of its last line
    of output (a measurement untouched by this process's state); its stderr ends the run if it fails."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_resident() -> int:
    """This process's peak resident memory in bytes. On Linux from /proc (VmHWM), because a child
    process's ru_maxrss starts at its parent's peak; elsewhere ru_maxrss (bytes on macOS)."""
    try:
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
