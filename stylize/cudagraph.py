"""Replaying a computation as a CUDA graph: recorded once, then launched as a whole.

The iterative method evaluates the same objective (VGG forward, losses, backward to the
pixels) at every step. On a GPU that step is bound by Python launching its kernels one by one:
about 440 launches and 14 ms of host time against 3 ms of GPU work at 512 px on an H200
(benchmarks/profile_step.py). Replaying a recorded graph launches them all in one call: the
step went from 10.1 to 5.2 ms, with the same kernels and bit-identical results
(benchmarks/iterative.py, tests/test_gpu.py). A training step is replayed the same way
(stylize.trainstep).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")

# Eager runs before recording, on a side stream (as torch's documentation asks): they make the
# libraries allocate their workspaces and pick their kernels outside the graph.
WARM_UP = 3


def on_side_stream(fn: Callable[[], T], device: torch.device, times: int = 1) -> T:
    """``fn`` run eagerly ``times`` times on a side stream of ``device``, as torch's
    documentation asks of the runs before a capture (they make the libraries allocate their
    workspaces and pick their kernels outside the graph); the last run's result."""
    with torch.cuda.device(device):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(times):
                out = fn()
        torch.cuda.current_stream().wait_stream(stream)
    return out


def record(fn: Callable[[], T], device: torch.device, warm_up: int = WARM_UP) -> Callable[[], T] | None:
    """``fn`` recorded as a CUDA graph, as a call that replays it and returns what the recorded
    run returned (the same tensors, refilled by each replay); None where it cannot be: not a
    CUDA device, or ``fn`` does something a graph cannot hold (e.g. reads a value back to the
    host). ``fn`` must read and write the same tensors at every call, in place. It runs
    ``warm_up`` times first (``on_side_stream``); the recording itself computes nothing, so a
    caller whose calls have effects (a training step) runs its first ones with
    ``on_side_stream`` and records with ``warm_up=0``."""
    if device.type != "cuda":
        return None
    graph = torch.cuda.CUDAGraph()
    # Capture happens on a stream of the current device, while fn's kernels go to its tensors'
    # device: were they another (--device cuda:1), the graph would record nothing and replay
    # stale results. So fn's device is made the current one, for the capture and each replay.
    with torch.cuda.device(device):
        try:
            torch.cuda.empty_cache()  # blocks cached for one stream are not lent to another (below)
            if warm_up:
                on_side_stream(fn, device, warm_up)
            # The warm-up's memory stays cached for its stream, and the graph takes a pool of its
            # own: emptying the cache before and after the warm-up kept a 2048 px run's reserved
            # memory at 11.9 GiB instead of 16.7 (8.2 without the graph; H200).
            torch.cuda.empty_cache()
            # Only this thread's CUDA calls are held to the capture's rules. A training's DataLoader
            # pins the next batches' memory in a thread of its own meanwhile; under the default
            # ("global") that thread's calls would break the capture and then raise in the loader.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                out = fn()
        except RuntimeError:  # torch reports what a capture cannot hold as RuntimeError
            return None

    def replay() -> T:
        with torch.cuda.device(device):  # the current stream of fn's device, as fn's kernels use
            graph.replay()
        return out

    return replay


class SameShapeReplay:
    """``fn(x)`` for a stream of inputs (a folder of video frames, batches of one size), replayed
    as a CUDA graph while their shape repeats: the first input of a shape runs eagerly (a single
    photo pays for no recording), the second is recorded (after the warm-up runs) and later ones
    replay it, one launch a pass instead of one an operation. Only the graph of the current shape
    is kept (its memory pool goes when another shape comes); where none can be recorded (not
    CUDA, or ``fn`` cannot be held) ``fn`` runs eagerly, and so it does where ``may_record(x)``
    says no (the graph's pool holds a second pass's memory). ``fn`` must not change anything but
    its result. Each call returns a tensor of its own (a replay refills the graph's)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 may_record: Callable[[torch.Tensor], bool] = lambda x: True) -> None:
        self.fn, self.device, self.may_record = fn, device, may_record
        self._last: tuple | None = None  # the last input's shape and type
        self._graph: tuple | None = None  # (shape and type, input buffer, replay)
        self._unrecordable: set[tuple] = set()

    @property
    def replaying(self) -> bool:
        """Whether the last call replayed a graph."""
        return self._graph is not None and self._graph[0] == self._last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        repeat, self._last = key == self._last, key
        if self._graph is not None and self._graph[0] == key:
            self._graph[1].copy_(x, non_blocking=True)
            return self._graph[2]().clone()
        self._graph = None  # another shape: its graph's memory is freed before anything else runs
        if repeat and key not in self._unrecordable and self.may_record(x):
            buffer = x.to(self.device, copy=True)
            replay = record(lambda: self.fn(buffer), self.device)
            if replay is not None:
                self._graph = (key, buffer, replay)
                return replay().clone()
        if repeat:
            self._unrecordable.add(key)
        return self.fn(x.to(self.device))
