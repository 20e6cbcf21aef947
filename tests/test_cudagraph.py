"""Replays as CUDA graphs, emulated on the CPU (conftest.emulated_record): what stays the same
from one replay to the next, and what must change through tensors."""

import pytest
import torch

from stylize import cudagraph
from stylize.cudagraph import SameShapeReplay
from stylize.imageio import load_image, resize
from stylize.transformer import stylize_image

from conftest import SAMPLES, emulated_record


def test_the_recording_emulation_replays_tensors_not_python():
    x, k = torch.ones(3), 2.0
    replay = emulated_record(lambda: x * k, None)
    x.fill_(3.0)
    assert torch.equal(replay(), torch.full((3,), 2.0))  # the recording's own result first
    k = 5.0
    assert torch.equal(replay(), torch.full((3,), 6.0))  # x's new values, the recorded k
    with pytest.raises(RuntimeError, match="host"):
        emulated_record(lambda: float(x.sum()), None)
    with pytest.raises(RuntimeError, match="shape depends on the data"):
        emulated_record(lambda: x[x > 2], None)


def test_same_shape_replay_records_on_the_second_input_of_a_shape(monkeypatch):
    """The first input of a shape runs eagerly, the second is recorded, later ones replay; another
    shape drops the graph. Every result is what ``fn`` gives, and stays as it was (a replay
    refills the graph's own output)."""
    recordings = []

    def counted_record(fn, device, warm_up=cudagraph.WARM_UP):
        recordings.append(device)
        return emulated_record(fn, device)

    monkeypatch.setattr(cudagraph, "record", counted_record)
    weight = torch.randn(4, 3, 3, 3)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, weight).relu()

    replay = SameShapeReplay(fn, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    shapes = ["a", "a", "a", "a", "b", "a", "a", "b", "b"]
    inputs = [torch.rand(1, 3, 8, 10 if s == "a" else 12, generator=generator) for s in shapes]
    results, replaying = [], []
    for x in inputs:
        results.append(replay(x))
        replaying.append(replay.replaying)
    assert replaying == [False, True, True, True, False, False, True, False, True]
    assert len(recordings) == 3  # the second a, the a after b, the second b
    for x, result in zip(inputs, results):
        assert torch.equal(result, fn(x))


def test_same_shape_replay_runs_eagerly_where_nothing_can_be_recorded():
    calls = []
    replay = SameShapeReplay(lambda x: calls.append(1) or x * 2, torch.device("cpu"))  # record(): None on the CPU
    for _ in range(4):
        assert torch.equal(replay(torch.ones(2)), torch.full((2,), 2.0))
    assert len(calls) == 4 and not replay.replaying


def test_fast_runs_of_same_size_photos_replay_one_pass(monkeypatch):
    """`stylize run --model` on frames of one size, with replays (emulated): each output is the
    eager pass's, bit for bit, also for full batches and a last, smaller batch."""
    from stylize.job import Fast

    monkeypatch.setattr(cudagraph, "record", lambda fn, device, warm_up=0: emulated_record(fn, device))
    fast = Fast("starry_night", "cpu", half=False)
    photo = resize(load_image(SAMPLES / "chelsea.jpg").rgb, (48, 64))
    frames = [photo.roll(4 * i, dims=-1) for i in range(5)]
    singles = [fast.run([frame])[0] for frame in frames]
    assert fast._pass.replaying
    batches = fast.run(frames[:2]) + fast.run(frames[2:4]) + fast.run(frames[4:])
    for frame, single, batched in zip(frames, singles, batches):
        eager = stylize_image(fast.network, frame, torch.device("cpu"))
        assert torch.equal(single, eager)
        torch.testing.assert_close(batched, eager, rtol=0, atol=1e-5)  # a batch may sum in another order
    unreplayed = Fast("starry_night", "cpu", half=False, cuda_graph=False)
    assert [torch.equal(unreplayed.run([f])[0], s) for f, s in zip(frames, singles)] == [True] * 5
    assert not unreplayed._pass.replaying


def test_same_shape_replay_records_only_what_may_be_recorded(monkeypatch):
    monkeypatch.setattr(cudagraph, "record", lambda fn, device, warm_up=0: emulated_record(fn, device))
    asked = []
    replay = SameShapeReplay(lambda x: x + 1, torch.device("cpu"),
                             may_record=lambda x: asked.append(x.numel()) or x.numel() < 10)
    for size in (4, 4, 4, 20, 20, 20, 4, 4):
        assert torch.equal(replay(torch.zeros(size)), torch.ones(size))
        if size == 20:
            assert not replay.replaying
    assert replay.replaying and asked == [4, 20, 4]  # asked once a shape's second input comes
