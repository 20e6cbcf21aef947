"""Running under `torchrun`: one process per device, joined by torch.distributed.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (a plain `stylize` command) the
world is one process and nothing here touches torch.distributed, so every command behaves
exactly as before. CUDA devices talk over NCCL, CPUs over Gloo; each rank uses the GPU of its
LOCAL_RANK.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from stylize.errors import DeviceError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that prints, shows progress and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_env() -> World:
    """The world torchrun describes in the environment (a single process without it)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise DeviceError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None


def device_for(spec: str, world: World) -> str:
    """Each rank's device: with several processes, `auto` and `cuda` mean the GPU of LOCAL_RANK."""
    if world.distributed and spec.strip().lower() in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{world.local_rank % torch.cuda.device_count()}"
    return spec


def start(device: torch.device, world: World) -> None:
    """Join the process group (NCCL for CUDA devices, Gloo otherwise); nothing for one process."""
    if not world.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shard(items: Sequence[T], world: World) -> list[T]:
    """This rank's share: every size-th item from its rank on, so each item goes to one rank."""
    return list(items[world.rank::world.size])


def gather(value: Any, world: World) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not world.distributed:
        return [value]
    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if ``flag`` is true on any."""
    return any(gather(flag, world))
