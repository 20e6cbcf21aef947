"""What the benchmark scripts share: where the data is, timing on a device, the device's name."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository; the GPU script points STYLIZE_SHARED at its own copy.
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared" / "data"))


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


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
