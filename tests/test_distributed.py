"""torch.distributed under torchrun, on the CPU with two Gloo processes and tiny generated data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylize.distributed import World, device_for, shard, world_from_env
from stylize.modelfile import save_model
from stylize.transformer import TransformerConfig, TransformerNet

from conftest import scene

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, "-m", "stylize", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_world_and_shards():
    assert world_from_env() == World() or "WORLD_SIZE" in os.environ
    items = list(range(7))
    shares = [shard(items, World(rank, 3)) for rank in range(3)]
    assert sorted(i for share in shares for i in share) == items  # every item exactly once
    assert device_for("cpu", World(1, 2, 1)) == "cpu"


def test_sharded_batch_does_every_job_once_and_gathers_failures(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        scene(40 + 4 * i, 32, seed=i).save(photos / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    torch.manual_seed(0)
    model = tmp_path / "m.pt"
    save_model(model, TransformerNet(TransformerConfig(width=4, blocks=1)), {"style_name": "x.png"})
    out = tmp_path / "out"
    result = torchrun("run", photos, "--model", model, "-o", out, "--device", "cpu")
    assert result.returncode != 0  # the broken file failed: exit code 1 from the ranks
    assert "shared by 2 processes" in result.stdout
    assert "failed: " in result.stdout and "broken.jpg" in result.stdout  # gathered on rank 0
    assert result.stdout.count("batch summary") == 1  # only rank 0 prints
    # No output was written twice (a second writer would have failed with "exists").
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}_x_m.png" for i in range(5)]
    assert "exists already" not in result.stdout
    again = torchrun("run", photos / "p0.png", photos / "p1.png", "--model", model, "-o", out, "--device", "cpu")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 done already" in again.stdout
