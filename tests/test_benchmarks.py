"""The GPU session's report script runs: a GPU is lent for minutes now and then, so a script
broken by a change elsewhere would cost that session. Here on the CPU at tiny sizes (--smoke)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, SHARED


def test_gpu_report_runs_and_prints_every_figure():
    result = subprocess.run([sys.executable, "benchmarks/gpu_report.py", "--smoke", "--device", "cpu",
                             "--train-steps", "2", "--frames", "2"], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "STYLIZE_SHARED": str(SHARED)})
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "iterative, default run at 96 px" in out and "objective" in out
    assert "frames/s" in out and "half precision" in out and "torch's instance norm" in out
    assert "frames of one size" in out and "held to the one before" in out
    if (SHARED / "photos").is_dir():
        for line in ("reference loop", "stylize train --shift-weight 0:", "stylize train --half --shift-weight 400:",
                     "losses read every step",
                     "torch's instance norm:", "training twice, 5 steps, same seed: weights equal"):
            assert line in out, out
    else:
        assert "training: skipped" in out


def test_training_profile_runs_and_prints_each_objective():
    result = subprocess.run([sys.executable, "benchmarks/profile_train.py", "--device", "cpu", "--steps", "1",
                             "--image-size", "32", "--batch-size", "2"], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "STYLIZE_SHARED": str(SHARED)})
    assert result.returncode == 0, result.stderr[-2000:]
    for shift in ("0", "400"):
        assert f"--shift-weight {shift}: " in result.stdout and "waiting for photos" in result.stdout, result.stdout


@pytest.mark.skipif(not (SHARED / "content").is_dir(), reason="needs ../shared/data/content (the photos it moves)")
def test_flow_benchmark_runs_and_finds_the_same_flows_both_ways():
    result = subprocess.run([sys.executable, "benchmarks/flow.py", "--device", "cpu", "--sizes", "64",
                             "--repeats", "1"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "STYLIZE_SHARED": str(SHARED)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "64 px" in result.stdout and "largest difference 0.00e+00 px" in result.stdout, result.stdout


@pytest.mark.skipif(not (SHARED / "content").is_dir(), reason="needs ../shared/data/content (the clips' photos)")
def test_frames_benchmark_runs_a_networks_frames_alone_and_held():
    result = subprocess.run([sys.executable, "benchmarks/frames.py", "--models-only", "--size", "64", "--frames",
                             "3", "--clips", "still", "--model-temporal", "2"], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "STYLIZE_SHARED": str(SHARED)})
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "--model starry_night (one pass a frame) temporal error" in out, out
    assert "held, --temporal-weight 2: temporal error" in out and "last objective" in out, out
