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


def torchrun(tmp_path: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    # torchrun leaves a folder in TMPDIR each time: inside the test's own, not littering /tmp.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
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
    result = torchrun(tmp_path, "run", photos, "--model", model, "-o", out, "--device", "cpu")
    assert result.returncode != 0  # the broken file failed: exit code 1 from the ranks
    assert "shared by 2 processes" in result.stdout
    assert "failed: " in result.stdout and "broken.jpg" in result.stdout  # gathered on rank 0
    assert result.stdout.count("batch summary") == 1  # only rank 0 prints
    # No output was written twice (a second writer would have failed with "exists").
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}_x_m.png" for i in range(5)]
    assert "exists already" not in result.stdout
    again = torchrun(tmp_path, "run", photos / "p0.png", photos / "p1.png", "--model", model, "-o", out,
                     "--device", "cpu")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 done already" in again.stdout


def test_under_torchrun_the_process_leaves_with_its_output_and_exit_code(tmp_path):
    # Under torchrun (WORLD_SIZE > 1) the command line ends with os._exit, skipping the
    # interpreter's teardown: what it printed and its exit code must still come out.
    env = {**os.environ, "WORLD_SIZE": "2"}
    info = subprocess.run([sys.executable, "-m", "stylize", "info"], capture_output=True, text=True, env=env)
    assert info.returncode == 0 and "backbone vgg16" in info.stdout, info.stderr
    bad = subprocess.run([sys.executable, "-m", "stylize", "run", "--bogus"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: No such option: --bogus"


@pytest.fixture
def training_data(tmp_path: Path) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        scene(48, 40, seed=i).save(photos / f"p{i}.png")
    style = tmp_path / "style.png"
    scene(40, 40, seed=11).save(style)
    return style, photos


# float32 (--no-half): two processes and one must agree to float32's rounding, not bfloat16's.
TRAIN = ["--image-size", "32", "--width", "4", "--blocks", "1", "--seed", "3", "--device", "cpu", "--no-half", "-q"]


def test_two_processes_train_like_one_with_the_global_batch(training_data, tmp_path):
    from typer.testing import CliRunner

    from stylize.cli import app
    from stylize.modelfile import load_model

    style, photos = training_data
    ddp, one = tmp_path / "ddp.pt", tmp_path / "one.pt"
    result = torchrun(tmp_path, "train", style, "-d", photos, "-o", ddp, "--batch-size", "1", "--steps", "3", *TRAIN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 steps of 1 x 2 processes = 2 photos" in result.stdout
    assert result.stdout.count("saved ") == 1  # rank 0 writes and speaks
    single = CliRunner().invoke(app, ["train", str(style), "-d", str(photos), "-o", str(one), "--batch-size", "2",
                                      "--steps", "3", *TRAIN])
    assert single.exit_code == 0, single.output
    a, b = load_model(ddp), load_model(one)
    assert a.meta["training"]["processes"] == 2
    # Convolution biases right before instance norm get zero gradient in exact arithmetic; Adam
    # turns their float noise into full-size steps. They do not change the output, and every
    # other weight must agree.
    weights = torch.cat([(a.network.state_dict()[k] - v).abs().flatten() for k, v in b.network.state_dict().items()])
    assert (weights < 1e-5).float().mean() > 0.99
    image = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (a.network.eval()(image) - b.network.eval()(image)).abs().max() < 1e-4


def test_checkpoint_of_two_processes_resumes_in_one(training_data, tmp_path):
    from typer.testing import CliRunner

    from stylize.cli import app
    from stylize.modelfile import load_model

    style, photos = training_data
    model = tmp_path / "m.pt"
    result = torchrun(tmp_path, "train", style, "-d", photos, "-o", model, "--batch-size", "1", "--steps", "2", *TRAIN)
    assert result.returncode == 0, result.stdout + result.stderr
    resumed = CliRunner().invoke(app, ["train", str(style), "-d", str(photos), "-o", str(model), "--batch-size", "2",
                                       "--steps", "4", "--resume", str(tmp_path / "m.ckpt.pt"), "--overwrite", *TRAIN])
    assert resumed.exit_code == 0, resumed.output
    assert "from step 2" in resumed.stdout
    assert load_model(model).meta["steps"] == 4
