"""The training step: its fixed-shape form (what a CUDA graph replays) against the sliced one."""

import importlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stylize.config import BackboneConfig, LossConfig, TrainConfig
from stylize.dataset import StepBatches
from stylize.losses import shift_consistency
from stylize.modelfile import load_model, save_model
from stylize.train import checkpoint_path, prepare_training, train
from stylize.trainstep import SHIFT_BAND, ShiftWindows, TrainStep, shifted_copy
from stylize.transformer import TransformerConfig

from conftest import emulated_record, scene

TINY_NET = TransformerConfig(width=8, blocks=1)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        scene(48 + 4 * i, 44, seed=i).save(folder / f"p{i}.png")
    return folder


def _config(**kw) -> TrainConfig:
    return TrainConfig(image_size=40, batch_size=2, checkpoint_every=100, half=False,
                       loss=LossConfig(style_weight=30.0), **kw)


def test_shift_windows_give_the_sliced_copy_and_term_for_every_shift():
    """The copy bit for bit, the term and its gradients to rounding, for all nine shifts; and
    selecting a shift refills the same tensors (a graph replays the ones it recorded)."""
    size = 40
    windows = ShiftWindows(size, torch.device("cpu"))
    tensors = [t.data_ptr() for t in windows.rows + windows.cols]
    batch = torch.rand(2, 3, size, size)
    for dy in (1, 2, 3):
        for dx in (1, 2, 3):
            windows.select(dy, dx)
            assert torch.equal(windows.copy(batch), shifted_copy(batch, dy, dx))
            terms, grads = [], []
            for term in (lambda o, s: windows.consistency(o, s),
                         lambda o, s: shift_consistency(o, s, dy, dx, SHIFT_BAND)):
                output, shifted = torch.rand(2, 2, 3, size, size, generator=torch.Generator().manual_seed(dy * 3 + dx))
                output.requires_grad_(True)
                shifted.requires_grad_(True)
                value = term(output, shifted)
                value.backward()
                terms.append(value.detach())
                grads.append((output.grad, shifted.grad))
            torch.testing.assert_close(terms[0], terms[1], rtol=1e-6, atol=0)
            for mine, sliced in zip(grads[0], grads[1]):
                torch.testing.assert_close(mine, sliced, rtol=1e-5, atol=1e-9)
    assert [t.data_ptr() for t in windows.rows + windows.cols] == tensors


def _steps(job, count: int, static: bool, graph: bool = False) -> tuple[TrainStep, list[dict]]:
    step = TrainStep(job.network, job.extractor, job.loss_fn, job.optimizer, torch.amp.GradScaler("cpu", enabled=False),
                     job.config, job.device, static=static, graph=graph)
    batches = StepBatches(job.photos, job.config.image_size, job.config.batch_size, job.config.seed, count)
    return step, [step(batches[k], k).as_floats() for k in range(count)]


@pytest.mark.parametrize("shift_weight", [400.0, 0.0])
def test_the_fixed_shape_step_trains_as_the_sliced_step(painting, photos, tmp_path, shift_weight):
    """What CUDA runs (and replays), run on the CPU: the same losses and weights to rounding as
    the CPU's own step, from crops copied into one buffer and shifts read through index tensors.
    Asked for a graph on the CPU, it steps eagerly."""
    results = []
    for static in (False, True):
        job = prepare_training(painting, photos, tmp_path / f"{static}.pt", _config(steps=4, shift_weight=shift_weight),
                               TINY_NET, BackboneConfig(), "cpu", overwrite=False)
        before = {k: v.clone() for k, v in job.network.state_dict().items()}
        step, losses = _steps(job, 4, static, graph=static)
        assert not step.replaying
        assert not all(torch.equal(before[k], v) for k, v in job.network.state_dict().items())  # it trained
        results.append((losses, job.network.state_dict()))
    (sliced, sliced_weights), (fixed, fixed_weights) = results
    assert [set(s) for s in sliced] == [set(f) for f in fixed]
    assert ("shift" in sliced[0]) == (shift_weight > 0)
    for a, b in zip(sliced, fixed):
        assert b == pytest.approx(a, rel=1e-5)
    for name in sliced_weights:
        torch.testing.assert_close(fixed_weights[name], sliced_weights[name], rtol=1e-4, atol=1e-6)


def test_a_checkpoint_of_a_cuda_optimiser_resumes_on_the_cpu(painting, photos, tmp_path):
    """On CUDA Adam keeps its step count on the device (``capturable``, for the graph); its
    checkpoint resumes on the CPU, where that setting cannot run, as a CPU checkpoint does."""
    out = tmp_path / "m.pt"
    train(prepare_training(painting, photos, out, _config(steps=2), TINY_NET, BackboneConfig(), "cpu",
                           overwrite=False))
    ckpt = load_model(checkpoint_path(out))
    optimizer = ckpt.resume["optimizer"]
    assert optimizer["param_groups"][0]["capturable"] is False
    cuda_like = {**optimizer, "param_groups": [{**g, "capturable": True} for g in optimizer["param_groups"]]}
    resumed = []
    for name, state in (("cpu.ckpt.pt", optimizer), ("cuda.ckpt.pt", cuda_like)):
        save_model(tmp_path / name, ckpt.network, ckpt.meta, resume={**ckpt.resume, "optimizer": state})
        job = prepare_training(painting, photos, tmp_path / f"{name}-4.pt", _config(steps=4), TINY_NET,
                               BackboneConfig(), "cpu", overwrite=False, resume=tmp_path / name)
        assert all(not g["capturable"] for g in job.optimizer.param_groups)
        assert train(job).steps_done == 4
        resumed.append(job.network.state_dict())
    assert all(torch.equal(resumed[0][k], resumed[1][k]) for k in resumed[0])


def test_training_meta_leaves_out_the_graph_switch(painting, photos, tmp_path):
    job = prepare_training(painting, photos, tmp_path / "m.pt", replace(_config(steps=1), cuda_graph=False), TINY_NET,
                           BackboneConfig(), "cpu", overwrite=False)
    assert "cuda_graph" not in job.meta["training"] and job.meta["training"]["shift_weight"] == 400.0


@pytest.mark.parametrize("shuffle,gpu_paths", [(1, False), (2, False), (1, True)],
                         ids=["classic", "shuffled", "classic-gpu-paths"])
def test_replayed_steps_train_as_eager_steps(painting, photos, tmp_path, monkeypatch, shuffle, gpu_paths):
    """What CUDA does, emulated on the CPU: three eager steps, a recording, then replays of it,
    with Adam keeping its step count in a tensor (``capturable``, allowed on the CPU here), and
    (``gpu_paths``) the network's padding gradients folded in a fixed order, as on a GPU. The
    replays change the crops and the shift through the step's tensors only, and train the same
    weights as eager steps, bit for bit."""
    import stylize.deterministic
    from stylize import trainstep

    if gpu_paths:
        monkeypatch.setattr(stylize.deterministic, "_fixed_order_wanted",
                            lambda x: x.requires_grad and torch.is_grad_enabled())
    monkeypatch.setattr(importlib.import_module("torch.optim.adam"), "_get_capturable_supported_devices",
                        lambda *a, **k: ["cpu"])
    monkeypatch.setattr(trainstep, "record", emulated_record)
    monkeypatch.setattr(trainstep, "on_side_stream", lambda fn, device, times=1: fn())
    steps = trainstep.WARM_UP + 4
    results = []
    for replayed in (True, False):
        job = prepare_training(painting, photos, tmp_path / f"{replayed}.pt", _config(steps=steps),
                               replace(TINY_NET, shuffle=shuffle), BackboneConfig(), "cpu", overwrite=False)
        job.optimizer = torch.optim.Adam(job.network.parameters(), lr=job.config.learning_rate, capturable=True)
        step = TrainStep(job.network, job.extractor, job.loss_fn, job.optimizer,
                         torch.amp.GradScaler("cpu", enabled=False), job.config, job.device, static=True, graph=False)
        step.graph = replayed  # what __init__ allows on CUDA only
        batches = StepBatches(job.photos, job.config.image_size, job.config.batch_size, job.config.seed, steps)
        losses = [step(batches[k], k).as_floats() for k in range(steps)]
        assert step.replaying == replayed
        results.append((losses, job.network.state_dict()))
    (replayed_losses, replayed_weights), (eager_losses, eager_weights) = results
    assert replayed_losses == eager_losses
    assert len({losses["shift"] for losses in replayed_losses}) == steps
    assert all(torch.equal(replayed_weights[k], eager_weights[k]) for k in eager_weights)
