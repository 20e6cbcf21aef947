"""Training on a handful of tiny generated photos, checkpoints, resume, model files."""

import functools
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from stylize.cli import app
from stylize.config import BackboneConfig, LossConfig, TrainConfig
from stylize.errors import InputError, OutputError
from stylize.modelfile import ModelFileError, load_model, save_model
from stylize.train import checkpoint_path, prepare_training, train
from stylize.trainstep import shift_for_step, shifted_copy
from stylize.transformer import TransformerConfig, TransformerNet, stylize_image

from conftest import scene

TINY_NET = TransformerConfig(width=8, blocks=1)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        scene(40 + 4 * i, 36, seed=i).save(folder / f"p{i}.png")
    scene(50, 40, seed=9).save(folder / "sub" / "deep.jpg")
    (folder / "broken.jpg").write_bytes(b"not really a jpeg")
    (folder / "notes.txt").write_text("ignored")
    return folder


@pytest.fixture
def style(painting: Path) -> Path:
    return painting


def config(**kw) -> TrainConfig:
    return TrainConfig(image_size=32, batch_size=2, checkpoint_every=2, loss=LossConfig(style_weight=30.0), **kw)


def _prepare(style, photos, out, cfg, resume=None):
    return prepare_training(style, photos, out, cfg, TINY_NET, BackboneConfig(), "cpu", overwrite=False,
                            resume=resume)


def test_training_writes_a_model_that_reloads(style, photos, tmp_path):
    out = tmp_path / "m.pt"
    job = _prepare(style, photos, out, config(steps=3))
    assert len(job.photos) == 4 and [p.name for p in job.skipped] == ["broken.jpg"]
    seen = []
    result = train(job, on_progress=seen.append)
    assert result.steps_done == 3 and not result.interrupted
    assert [p.step for p in seen] == [1, 2, 3] and all(p.losses["total"] > 0 for p in seen)
    model = load_model(out)
    assert model.meta["steps"] == 3 and model.meta["style_name"] == "painting.png" and model.resume is None
    assert model.network.config == TINY_NET
    assert checkpoint_path(out).is_file()


def test_training_starts_near_flat_grey_whatever_the_seed(style, photos, tmp_path):
    # From PyTorch's default initialisation some seeds started from noise with many times the
    # style loss of others, and trained washed-out models; the output layer starts at a tenth
    # of it (train.OUTPUT_INIT_SCALE), so every seed starts near flat grey.
    photo = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(0))
    trained = []
    for seed in (0, 1, 2):
        job = _prepare(style, photos, tmp_path / f"s{seed}.pt", config(steps=3, seed=seed))
        start = stylize_image(job.network, photo, job.device)  # keeps the network in training mode
        assert float((start - start.mean()).abs().max()) < 0.05  # the default init: 0.22-0.32
        train(job)
        trained.append(stylize_image(job.network, photo, job.device))
        assert float((trained[-1] - start).abs().max()) > 1e-3  # it trains
    # The seed still draws the rest of the network: three different models.
    assert not torch.equal(trained[0], trained[1]) and not torch.equal(trained[1], trained[2])


def test_resume_continues_to_the_same_weights(style, photos, tmp_path):
    straight = tmp_path / "straight.pt"
    train(_prepare(style, photos, straight, config(steps=4)))
    split = tmp_path / "split.pt"
    first = train(_prepare(style, photos, split, config(steps=2)))
    assert load_model(first.checkpoint).resume["step"] == 2
    split.unlink()
    resumed = _prepare(style, photos, split, config(steps=4), resume=first.checkpoint)
    assert resumed.start_step == 2
    train(resumed)
    a = load_model(straight).network.state_dict()
    b = load_model(split).network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Another network asked for on resume would be ignored (the checkpoint's is trained on): refused.
    wider = TransformerConfig(width=TINY_NET.width * 2, blocks=TINY_NET.blocks)
    with pytest.raises(InputError, match="its network is --width 8 --blocks 1 .* not the --width 16 --blocks 1"):
        prepare_training(style, photos, tmp_path / "other.pt", config(steps=4), wider, BackboneConfig(), "cpu",
                         overwrite=False, resume=first.checkpoint)
    # So would another loss (or a default changed since the checkpoint): refused, naming its options.
    other = replace(config(steps=4), loss=LossConfig(style_weight=7.0, content_layers=(("relu3_1", 1.0),)))
    with pytest.raises(InputError, match="was trained with --style-weight 30.0 --content-layers relu4_2; resume"):
        _prepare(style, photos, tmp_path / "other.pt", other, resume=first.checkpoint)
    # A finished model points at its own checkpoint (it pointed at the new output's, which is not there).
    with pytest.raises(InputError, match=f"a finished model, not a checkpoint; resume from its checkpoint, "
                                         f"{re.escape(str(tmp_path / 'straight.ckpt.pt'))}$"):
        _prepare(style, photos, tmp_path / "other.pt", config(steps=6), resume=straight)
    (tmp_path / "straight.ckpt.pt").unlink()
    with pytest.raises(InputError, match=r"its training wrote beside it \(straight.ckpt.pt\)$"):
        _prepare(style, photos, tmp_path / "other.pt", config(steps=6), resume=straight)


def test_a_checkpoint_keeps_its_upsampling_when_resumed(style, photos, tmp_path):
    """Upsampling is not an option: a checkpoint from before bilinear upsampling (nearest) resumes
    under the command that wrote it and trains on with nearest-neighbour copies."""
    out = tmp_path / "m.pt"
    nearest = replace(TINY_NET, upsample="nearest")
    first = train(prepare_training(style, photos, out, config(steps=2), nearest, BackboneConfig(), "cpu",
                                   overwrite=False))
    assert TINY_NET.upsample == "bilinear"
    resumed = _prepare(style, photos, tmp_path / "m2.pt", config(steps=3), resume=first.checkpoint)
    assert resumed.network.config == nearest
    train(resumed)
    assert load_model(tmp_path / "m2.pt").network.config == nearest


def test_each_step_also_trains_shift_consistency_on_copies_shifted_1_to_3_px(style, photos, tmp_path):
    shifts = [shift_for_step(0, step) for step in range(200)]
    assert {dy for dy, _ in shifts} == {1, 2, 3} == {dx for _, dx in shifts}
    assert shifts == [shift_for_step(0, step) for step in range(200)]  # resumable: fixed by seed and step
    assert shifts != [shift_for_step(1, step) for step in range(200)]
    batch = torch.rand(2, 3, 32, 36)
    copy = shifted_copy(batch, 2, 1)
    assert copy.shape == batch.shape and torch.equal(copy[..., :30, :35], batch[..., 2:, 1:])
    seen = []
    train(_prepare(style, photos, tmp_path / "m.pt", config(steps=2)), on_progress=seen.append)
    for losses in (p.losses for p in seen):
        assert losses["shift"] > 0
        assert losses["total"] == pytest.approx(losses["content"] + losses["style"] + losses["tv"] + losses["shift"])
    seen = []
    train(_prepare(style, photos, tmp_path / "off.pt", config(steps=1, shift_weight=0.0)), on_progress=seen.append)
    assert "shift" not in seen[0].losses
    with pytest.raises(InputError, match="--shift-weight must be zero or positive"):
        config(shift_weight=-1.0)


def test_a_checkpoint_from_before_the_shift_term_resumes_only_without_it(style, photos, tmp_path):
    first = train(_prepare(style, photos, tmp_path / "m.pt", config(steps=2, shift_weight=0.0)))
    old = load_model(first.checkpoint)
    del old.meta["training"]["shift_weight"]  # as files written before the term have it
    save_model(first.checkpoint, old.network, old.meta, resume=old.resume, overwrite=True)
    with pytest.raises(InputError, match="was trained with --shift-weight 0.0; resume"):
        _prepare(style, photos, tmp_path / "m2.pt", config(steps=3), resume=first.checkpoint)
    resumed = _prepare(style, photos, tmp_path / "m2.pt", config(steps=3, shift_weight=0.0), resume=first.checkpoint)
    assert resumed.start_step == 2


def test_an_earlier_trainings_checkpoint_is_not_replaced_by_a_new_training(style, photos, tmp_path):
    """Running an interrupted training's command again, without --resume, would have started
    afresh and written its first checkpoint over the earlier one: refused, pointing at --resume;
    resuming from it, or --overwrite, goes ahead."""
    out = tmp_path / "m.pt"

    def stop(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    first = train(_prepare(style, photos, out, config(steps=6)), on_progress=stop)
    kept = first.checkpoint.read_bytes()
    with pytest.raises(OutputError, match=f"m.ckpt.pt: an earlier training's checkpoint, which this training would "
                                          f"replace; go on from it with --resume {re.escape(str(first.checkpoint))}, "
                                          "pass --overwrite"):
        _prepare(style, photos, out, config(steps=6))
    other = tmp_path / "other.ckpt.pt"
    other.write_bytes(kept)
    with pytest.raises(OutputError, match="m.ckpt.pt: an earlier training's checkpoint, .*; pass --overwrite"):
        _prepare(style, photos, out, config(steps=6), resume=other)
    assert first.checkpoint.read_bytes() == kept
    assert _prepare(style, photos, out, config(steps=6), resume=first.checkpoint).start_step == 3
    fresh = prepare_training(style, photos, out, config(steps=6), TINY_NET, BackboneConfig(), "cpu", overwrite=True)
    assert fresh.start_step == 0
    # Nor an earlier training's previews (the checkpoint gone): a step this one would write is refused.
    first.checkpoint.unlink()
    (tmp_path / "m.preview-000004.png").write_bytes(b"earlier")
    for steps, refused in ((3, False), (4, True), (7, True)):
        attempt = functools.partial(prepare_training, style, photos, out, config(steps=steps), TINY_NET,
                                    BackboneConfig(), "cpu", overwrite=False, preview=style)
        if refused:
            with pytest.raises(OutputError, match="m.preview-000004.png: exists already .*; pass --overwrite"):
                attempt()
        else:
            attempt()


@pytest.mark.parametrize("failing_write", [1, 2, 4])  # checkpoints at steps 2, 4, 6, then the model
def test_a_full_disk_stops_training_saying_how_to_go_on(style, photos, tmp_path, monkeypatch, failing_write):
    """A checkpoint or model write that finds the disk full stops the training; the message says to
    resume from the last checkpoint (written whole) where there is one, and doing so finishes the
    training (when only the model's write failed, resuming just writes it)."""
    import errno

    import stylize.modelfile
    from stylize.errors import DiskFullError

    real, writes = stylize.modelfile.atomic_write, []

    def full(handle) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def filling(path, write, overwrite=False):
        writes.append(path.name)
        real(path, full if len(writes) == failing_write else write, overwrite)

    def prepare(resume=None):
        return prepare_training(style, photos, out, config(steps=6), TINY_NET, BackboneConfig(), "cpu",
                                overwrite=False, resume=resume, preview=style)

    monkeypatch.setattr(stylize.modelfile, "atomic_write", filling)
    out = tmp_path / "m.pt"
    with pytest.raises(DiskFullError) as caught:
        train(prepare())
    checkpoint = checkpoint_path(out)
    if failing_write == 1:
        assert str(caught.value).endswith("free some space, then run the same command again")
        assert not checkpoint.exists()
        return
    assert str(caught.value).endswith(f"go on from the last checkpoint with the same command plus "
                                      f"--resume {checkpoint}")
    assert "no space left on its disk" in str(caught.value) and not out.exists()
    monkeypatch.setattr(stylize.modelfile, "atomic_write", real)
    resumed = prepare(resume=checkpoint)  # its previews so far are its own: not refused
    assert resumed.start_step == {2: 2, 4: 6}[failing_write]
    train(resumed)
    assert load_model(out).meta["steps"] == 6
    with pytest.raises(InputError, match="has 6 steps already; ask for more"):
        _prepare(style, photos, tmp_path / "n.pt", config(steps=5), resume=checkpoint)


def test_interrupted_training_writes_a_checkpoint(style, photos, tmp_path):
    out = tmp_path / "m.pt"

    def stop(progress):
        if progress.step == 1:
            raise KeyboardInterrupt

    result = train(_prepare(style, photos, out, config(steps=5)), on_progress=stop)
    assert result.interrupted and result.steps_done == 1 and not out.exists()
    assert load_model(result.checkpoint).resume["step"] == 1


def test_sigterm_stops_training_with_a_checkpoint_to_resume(style, photos, tmp_path):
    """kill, timeout or a cluster scheduler's stop: as Ctrl-C, not the work since the last checkpoint lost."""
    out = tmp_path / "m.pt"
    cmd = [sys.executable, "-m", "stylize", "train", str(style), "-d", str(photos), "-o", str(out), "--steps",
           "100000", "--checkpoint-every", "100000", "--image-size", "32", "--batch-size", "2", "--width", "8",
           "--blocks", "1", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "training on" in proc.stdout.readline()
    time.sleep(2.0)  # some steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted at step" in err and "Traceback" not in err, err
    step = int(err.split("interrupted at step ")[1].split(":")[0])
    assert load_model(checkpoint_path(out)).resume["step"] == step and not out.exists()


def test_a_worker_keeps_quiet_when_a_stop_breaks_a_batch_handover(monkeypatch):
    """The race behind a traceback seen once under the stop message: the main process, stopped
    while taking a batch's shared memory, leaves the worker's resource-sharer thread with a broken
    connection, which it reports through sys.excepthook. In workers that report is dropped; any
    other error still reaches the previous hook."""
    from stylize.dataset import ignore_stop_signals_in_worker

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: seen.append(info[0]))  # restored after the test
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    namespace: dict = {}
    exec(compile("def serve():\n    raise EOFError('the main process hung up')\n",
                 "/usr/lib/python3/multiprocessing/resource_sharer.py", "exec"), namespace)
    try:
        ignore_stop_signals_in_worker(0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        for failing in (namespace["serve"], lambda: 1 / 0):
            try:
                failing()
            except Exception:
                sys.excepthook(*sys.exc_info())
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert seen == [ZeroDivisionError]


def test_a_narrow_style_image_trains_and_a_tiny_style_size_is_refused(photos, tmp_path):
    strip = tmp_path / "strip.png"
    scene(400, 16).save(strip)  # at --style-size 64 it would be 3 px tall: too small for relu5_1
    result = train(_prepare(strip, photos, tmp_path / "m.pt", config(steps=1, style_size=64)))
    assert result.steps_done == 1
    with pytest.raises(InputError, match="--style-size must be at least 32"):
        config(steps=1, style_size=8)


def test_photos_over_the_pixel_limit_are_skipped_when_scanned(photos, recwarn):
    from stylize.dataset import scan_photos

    scan = scan_photos(photos, max_pixels=44 * 36)  # p2.png (48x36) and deep.jpg (50x40) are larger
    assert sorted(p.name for p in scan.paths) == ["p0.png", "p1.png"]
    assert sorted(p.name for p in scan.skipped) == ["broken.jpg", "deep.jpg", "p2.png"]
    assert not [w for w in recwarn if "DecompressionBomb" in str(w.category)]


def test_empty_or_unusable_folder(style, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no usable images"):
        _prepare(style, empty, tmp_path / "m.pt", config(steps=1))
    (empty / "bad.png").write_bytes(b"xx")
    with pytest.raises(InputError, match="1 unreadable"):
        _prepare(style, empty, tmp_path / "m.pt", config(steps=1))
    with pytest.raises(InputError, match=f"emty: not a folder of training photos; did you mean {empty}"):
        _prepare(style, tmp_path / "emty", tmp_path / "m.pt", config(steps=1))
    with pytest.raises(InputError, match=r"bad.png: not a folder of training photos$"):  # a file: no guess
        _prepare(style, empty / "bad.png", tmp_path / "m.pt", config(steps=1))


def test_photos_that_pass_the_scan_but_cannot_be_decoded(style, tmp_path):
    # A cut JPEG's header reads well, so the scan keeps it; the crops decode it and give up with the reason.
    folder = tmp_path / "cut"
    folder.mkdir()
    scene(256, 256).save(tmp_path / "whole.jpg")
    whole = (tmp_path / "whole.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, ["train", str(style), "-d", str(folder), "-o", str(out), "--steps", "2",
                                      "--image-size", "32", "--width", "8", "--blocks", "1", "--quiet"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: none of the 1 training photo(s) could be decoded (the "
                                                     f"last: {folder / 'cut.jpg'}: the image is truncated"), errors
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize("payload,message", [
    (b"garbage bytes", "not a readable"),
    ({"hello": 1}, "not a stylize model"),
    ({"format": "stylize-model", "version": 99}, "newer"),
    ({"format": "stylize-model", "version": 1, "network": {"width": 8, "blocks": 1, "norm": "instance"},
      "state_dict": {"x": torch.zeros(1)}}, "damaged"),
])
def test_bad_model_files(tmp_path, payload, message):
    path = tmp_path / "bad.pt"
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        torch.save(payload, path)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_model_file_round_trip_without_pickle(tmp_path):
    net = TransformerNet(TINY_NET)
    path = tmp_path / "m.pt"
    save_model(path, net, {"style_name": "s.png"})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "stylize-model" and raw["version"] == 1
    back = load_model(path).network
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(back(x), net.eval()(x))


def test_cli_train_then_run_with_the_model(style, photos, tmp_path):
    runner = CliRunner()
    model = tmp_path / "m.pt"
    result = runner.invoke(app, ["train", str(style), "-d", str(photos), "-o", str(model), "--steps", "2",
                                 "--image-size", "32", "--batch-size", "2", "--width", "8", "--blocks", "1",
                                 "--preview", str(photos / "p0.png"), "--checkpoint-every", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable or too large file" in result.stderr
    # Not a terminal here: the progress is a log line, written when training completes.
    line = r"^step 2/2 \(100%\), \d:\d\d:\d\d elapsed; [\d.]+ img/s loss "
    assert re.search(line, result.stderr, re.M), result.stderr
    assert (tmp_path / "m.preview-000001.png").is_file()
    photo = photos / "p1.png"
    out = tmp_path / "styled.png"
    result = runner.invoke(app, ["run", str(photo), "--model", str(model), "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(out).size == Image.open(photo).size
    bad = runner.invoke(app, ["run", str(photo), "--model", str(tmp_path / "nope.pt")])
    assert bad.exit_code == 2 and "no such model" in bad.stderr
    both = runner.invoke(app, ["run", str(photo), "--style", str(style), "--model", str(model)])
    assert both.exit_code == 2 and "no --style" in both.stderr
    exists = runner.invoke(app, ["train", str(style), "-d", str(photos), "-o", str(model), "--steps", "1"])
    assert exists.exit_code == 2 and "exists" in exists.stderr


def test_cli_train_points_a_cpu_user_at_the_faster_settings(style, photos, tmp_path):
    """The classic defaults suit a GPU; on the CPU the command names the bundled models' settings,
    which train about 8 times faster there. Not when those (or other) settings are given."""
    runner = CliRunner()
    common = [str(style), "-d", str(photos), "--steps", "1", "--image-size", "32", "--batch-size", "1",
              "--device", "cpu", "--quiet"]
    classic = runner.invoke(app, ["train", *common, "-o", str(tmp_path / "c.pt")])
    assert classic.exit_code == 0, classic.output
    recorded = load_model("starry_night").meta["training"]  # the settings the note names, as the files record them
    assert ("note: on a CPU the bundled models' settings train about 8x faster: --width 16 --blocks 3 --shuffle 2 "
            f"--image-size {recorded['image_size']} --style-size {recorded['style_size']}") in classic.stdout
    fast = runner.invoke(app, ["train", *common, "-o", str(tmp_path / "f.pt"), "--width", "16", "--blocks", "3",
                               "--shuffle", "2"])
    assert fast.exit_code == 0, fast.output
    assert "note:" not in fast.stdout


def test_models_command_lists_bundled_models():
    """The text listing (test_bundled_models.py checks --json)."""
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in ("starry_night", "the_scream", "shipwreck"):
        (line,) = [line for line in lines if line.startswith(name + " ")]
        assert f"style {name}.jpg" in line and "steps at" in line and "content relu" in line
        assert re.search(r"shift weight \d+\.\d", line), line


@pytest.mark.parametrize("start", [None, "spawn"])
def test_background_loader_gives_the_same_training(style, photos, tmp_path, start):
    """Batches depend on the step only, so a worker process changes nothing; also where workers are
    started afresh rather than forked (spawn: macOS and Windows; Python 3.14 on Linux starts them
    from a fork server), which needs everything a worker gets to be picklable."""
    import multiprocessing

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    train(_prepare(style, photos, a, config(steps=2)))
    before = multiprocessing.get_start_method()
    multiprocessing.set_start_method(start or before, force=True)
    try:
        train(_prepare(style, photos, b, config(steps=2, workers=1)))
    finally:
        multiprocessing.set_start_method(before, force=True)
    sa, sb = load_model(a).network.state_dict(), load_model(b).network.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_progress_is_throttled_on_a_gpu_without_changing_the_training(style, photos, tmp_path):
    """Reading the losses back waits for a GPU, so there they are reported at most ten times a
    second; the first, the last and checkpoint steps always. Reporting changes no weight."""
    from stylize.train import report_interval

    assert report_interval(torch.device("cpu")) == 0.0
    assert 0 < report_interval(torch.device("cuda")) <= 0.2
    every, seldom = [], []
    train(_prepare(style, photos, tmp_path / "a.pt", config(steps=5)), on_progress=every.append)
    train(_prepare(style, photos, tmp_path / "b.pt", config(steps=5)), on_progress=seldom.append, report_every=1e9)
    assert [p.step for p in every] == [1, 2, 3, 4, 5]
    assert [p.step for p in seldom] == [1, 2, 4, 5]  # first, checkpoints (every 2), last
    assert [p.losses for p in seldom] == [every[i].losses for i in (0, 1, 3, 4)]
    assert seldom[-1].images_per_second > 0 and seldom[-1].elapsed >= seldom[0].elapsed
    sa, sb = load_model(tmp_path / "a.pt").network.state_dict(), load_model(tmp_path / "b.pt").network.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_half_precision_training_follows_float32(style, photos, tmp_path):
    """--half (bfloat16 autocast here on the CPU; the same code runs float16 with loss scaling on
    older GPUs): the losses track float32's and the network learns."""
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    seen_full, seen_half = [], []
    train(_prepare(style, photos, full, config(steps=3, half=False)), on_progress=seen_full.append)
    train(_prepare(style, photos, half, config(steps=3, half=True)), on_progress=seen_half.append)
    for a, b in zip(seen_full, seen_half):
        assert b.losses["total"] == pytest.approx(a.losses["total"], rel=0.05)
    assert load_model(half).meta["training"]["half"] is True
    assert load_model(full).meta["training"]["half"] is False
    # Neither flag: the device decides (on where bfloat16 is native), and the job records which.
    from stylize.device import resolve_half

    job = _prepare(style, photos, tmp_path / "default.pt", config(steps=1))
    assert job.config.half is resolve_half(torch.device("cpu"), None)
    weights = load_model(half).network.state_dict()
    assert all(v.dtype == torch.float32 for v in weights.values())  # the model file stays float32


def test_default_loader_workers_depend_on_the_device():
    from stylize.train import loader_workers

    assert loader_workers(None, torch.device("cpu")) == 0
    assert 1 <= loader_workers(None, torch.device("cuda")) <= 8
    assert loader_workers(3, torch.device("cpu")) == 3


def test_a_step_or_style_image_that_would_not_fit_is_refused_before_any_work(style, photos, tmp_path, monkeypatch):
    """On the CPU the system kills a process that runs out of memory rather than failing its
    allocation (--batch-size 10^20 grew to 14 GB reading crops; --image-size 10^20 was a
    traceback from the style image's resize), so a step too large is refused up front."""
    import stylize.train
    from stylize.errors import ResourceError
    from stylize.train import estimate_step_memory

    small, net = config(), TINY_NET
    need = estimate_step_memory(small, net, "vgg16")
    assert estimate_step_memory(replace(small, batch_size=4), net, "vgg16") > need  # more crops, more memory
    assert estimate_step_memory(replace(small, image_size=64), net, "vgg16") > need
    assert estimate_step_memory(small, replace(net, width=16), "vgg16") > need
    monkeypatch.setattr(stylize.train, "memory_budget", lambda device: need)
    _prepare(style, photos, tmp_path / "fits.pt", small)  # exactly what the device has: it fits
    for cfg, advice in [(replace(small, batch_size=3), "lower --batch-size or --image-size"),
                        (replace(small, style_size=100_000), "lower --style-size")]:
        with pytest.raises(ResourceError, match=advice):
            _prepare(style, photos, tmp_path / "m.pt", cfg)
    monkeypatch.undo()
    out = tmp_path / "big.pt"
    result = CliRunner().invoke(app, ["train", str(style), "-d", str(photos), "-o", str(out), "--quiet",
                                      "--batch-size", "99999999999999999999"])
    assert result.exit_code == 2 and not out.exists()
    assert re.fullmatch(r"error: a training step of 99999999999999999999 crops of 256 px needs about over a million "
                        r"GB but cpu has \d+\.\d GB free; lower --batch-size or --image-size\n", result.stderr)


def test_cli_train_takes_loss_layers_and_records_them(style, photos, tmp_path):
    runner = CliRunner()
    model = tmp_path / "m.pt"
    common = [str(style), "-d", str(photos), "--steps", "1", "--image-size", "32", "--batch-size", "2",
              "--width", "8", "--blocks", "1", "--quiet"]
    result = runner.invoke(app, ["train", *common, "-o", str(model), "--content-layers", "relu1_2",
                                 "--style-layers", "relu1_1:2,relu2_1", "--shift-weight", "50"])
    assert result.exit_code == 0, result.output
    training = load_model(model).meta["training"]
    assert training["content_layers"] == "relu1_2"
    assert training["style_layers"] == "relu1_1:2,relu2_1"
    assert training["shift_weight"] == 50.0
    # Without the options: Johnson et al.'s layers, not the iterative run's.
    assert runner.invoke(app, ["train", *common, "-o", str(tmp_path / "d.pt")]).exit_code == 0
    defaults = load_model(tmp_path / "d.pt").meta["training"]
    assert defaults["content_layers"] == "relu2_2"
    assert defaults["style_layers"] == "relu1_2,relu2_2,relu3_3,relu4_3"
    assert defaults["shift_weight"] == TrainConfig().shift_weight > 0
    negative = runner.invoke(app, ["train", *common, "-o", str(tmp_path / "n.pt"), "--shift-weight", "-1"])
    assert negative.exit_code == 2 and "--shift-weight must be zero or positive" in negative.stderr
    assert len(negative.stderr.strip().splitlines()) == 1 and not (tmp_path / "n.pt").exists()
    for option, value, message in [("--style-layers", "relu9_9", "unknown style layer 'relu9_9'"),
                                   # the seed is scaled for each step's generators (a large one overflowed)
                                   ("--seed", str(2**32), "--seed must be between 0 and 4294967295"),
                                   # each worker is a process: 10^20 of them forked until the system refused
                                   ("--workers", str(os.cpu_count() + 1), "CPUs here; use at most")]:
        bad = runner.invoke(app, ["train", *common, "-o", str(tmp_path / "b.pt"), option, value])
        assert bad.exit_code == 2 and message in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.pt").exists()


def test_training_crops_of_a_large_jpeg_come_from_a_smaller_decode(tmp_path):
    """A crop of 32 px needs a short side of at most 48: an 800x600 JPEG is decoded at 1/8
    (100x75) instead of whole, and the crop is what that smaller picture gives."""
    from stylize.dataset import MAX_CROP_SCALE, StepBatches, crop_generator, random_crop
    from stylize.imageio import load_image

    path = tmp_path / "big.jpg"
    scene(800, 600).save(path, quality=95)
    batches = StepBatches([path], image_size=32, batch_size=1, seed=3, steps=1)
    small = load_image(path, min_short_side=math.ceil(32 * MAX_CROP_SCALE)).rgb
    assert small.shape[-2:] == (75, 100)
    expected = random_crop(small, 32, crop_generator(3, 0))
    assert torch.equal(batches[0], expected)
