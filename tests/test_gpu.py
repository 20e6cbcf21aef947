"""Checks that need a CUDA device; skipped, with the reason, everywhere else."""

import dataclasses
from pathlib import Path

import pytest
import torch

from stylize.config import BackboneConfig, InitKind, LossConfig, RunConfig
from stylize.device import make_deterministic, resolve_device
from stylize.features import FeatureExtractor, load_weights
from stylize.imageio import LoadedImage, load_image, resize
from stylize.losses import required_layers
from stylize.optimize import ScaleProblem, run_iterative

from conftest import SAMPLES, assert_gradients_close, output_and_gradients

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")]


@pytest.fixture(scope="module")
def setup():
    weights = load_weights(BackboneConfig())
    cpu = FeatureExtractor(weights.arch, weights.state, required_layers(LossConfig()))
    gpu = FeatureExtractor(weights.arch, weights.state, required_layers(LossConfig())).to("cuda")
    content = resize(load_image(SAMPLES / "chelsea.jpg").rgb, (96, 128))
    style = resize(load_image(SAMPLES / "swirls.jpg").rgb, (96, 128))
    return cpu, gpu, content, style


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"


def test_cuda_run_is_deterministic(setup):
    _, gpu, content, style = setup
    make_deterministic(torch.device("cuda"))
    config = RunConfig(size=128, iterations=(20,), init=InitKind.random, seed=1)
    a = run_iterative(content, [style], config, gpu).image
    b = run_iterative(content, [style], config, gpu).image
    assert torch.equal(a, b)


def test_cuda_reaches_the_same_quality_as_cpu(setup):
    cpu, gpu, content, style = setup
    config = RunConfig(size=128, iterations=(40,), half=False)  # float32 on both (the CPU's default may be bfloat16)
    objective = []
    for extractor in (cpu, gpu):
        image = run_iterative(content, [style], config, extractor).image
        with torch.no_grad():
            objective.append(ScaleProblem(cpu, config, content, [style], (96, 128))(image).total.item())
    assert objective[1] == pytest.approx(objective[0], rel=0.15)


def test_cuda_half_precision_iterative_run_keeps_quality(setup):
    """--half on the iterative method (bfloat16 where the GPU has it, else refused): it ends near
    float32's objective, evaluated in float32."""
    from stylize.device import half_dtype

    cpu, gpu, content, style = setup
    if half_dtype(torch.device("cuda")) != torch.bfloat16:
        pytest.skip("this GPU has no bfloat16: --half is refused for the iterative method")
    objective = []
    for half in (False, True):
        image = run_iterative(content, [style], RunConfig(size=128, iterations=(40,), half=half), gpu).image
        with torch.no_grad():
            objective.append(ScaleProblem(cpu, RunConfig(half=False), content, [style], (96, 128))(image).total.item())
    assert objective[1] == pytest.approx(objective[0], rel=0.15)


def test_cuda_half_precision_inference_is_close_to_float32():
    from stylize.transformer import FAST, TransformerNet, stylize_image

    torch.manual_seed(0)
    net = TransformerNet(FAST).cuda()
    image = torch.rand(2, 3, 256, 320)
    full = stylize_image(net, image, torch.device("cuda"))
    half = stylize_image(net, image, torch.device("cuda"), half=True)
    assert half.dtype == torch.float32
    assert (half - full).abs().mean() < 0.01


@pytest.mark.parametrize("classic", [False, True], ids=["fast", "classic"])
def test_cuda_inference_copy_gives_the_networks_output(classic):
    """for_inference on the GPU, as `stylize run --model` runs it: the network's own output (the
    same folded kernels; cuDNN limited to deterministic kernels, as the commands set it)."""
    from stylize.transformer import CLASSIC, FAST, TransformerNet, for_inference, stylize_image

    make_deterministic(torch.device("cuda"))
    torch.manual_seed(0)
    net = TransformerNet(CLASSIC if classic else FAST).cuda()
    image = torch.rand(2, 3, 120, 150)
    for half in (False, True):
        ours = stylize_image(for_inference(net), image, torch.device("cuda"), half)
        assert torch.equal(ours, stylize_image(net, image, torch.device("cuda"), half))


def test_cuda_exported_torchscript_matches(tmp_path):
    from stylize.config import ExportFormat
    from stylize.exported import export_model, load_exported
    from stylize.transformer import FAST, TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(FAST).eval()
    export_model(net, {}, tmp_path / "m.ts", ExportFormat.torchscript)
    exported = load_exported(tmp_path / "m.ts", torch.device("cuda"))
    image = torch.rand(1, 3, 100, 130)
    with torch.no_grad():
        assert torch.allclose(exported(image), net(image), atol=1e-3)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_cuda_graph_run_equals_the_eager_run(setup, optimizer):
    """The objective replayed as a CUDA graph takes the same steps, bit for bit."""
    from stylize.config import OptimizerKind

    _, gpu, content, style = setup
    make_deterministic(torch.device("cuda"))
    config = RunConfig(size=128, iterations=(30,), optimizer=OptimizerKind(optimizer))
    graphed = run_iterative(content, [style], config, gpu)
    eager = run_iterative(content, [style], dataclasses.replace(config, cuda_graph=False), gpu)
    assert torch.equal(graphed.image, eager.image) and graphed.losses == eager.losses
    assert graphed.losses["total"] < 1e3  # it did optimise (not a graph replaying nothing)


def test_cuda_graph_masked_run_equals_the_eager_run(setup):
    """--mask's guides are buffers inside the recorded objective: replayed, the same steps."""
    _, gpu, content, style = setup
    make_deterministic(torch.device("cuda"))
    mask = torch.zeros(1, 1, 48, 64)
    mask[..., 32:] = 1.0
    config = RunConfig(size=128, iterations=(30,))
    graphed = run_iterative(content, [style], config, gpu, mask=mask)
    eager = run_iterative(content, [style], dataclasses.replace(config, cuda_graph=False), gpu, mask=mask)
    plain = run_iterative(content, [style], config, gpu)
    assert torch.equal(graphed.image, eager.image) and graphed.losses == eager.losses
    assert graphed.losses["style"] != plain.losses["style"]  # the guides were in the graph


def test_cuda_graph_replays_in_place_and_refuses_what_it_cannot_hold():
    from stylize.cudagraph import record

    device = torch.device("cuda")
    x = torch.ones(4, device=device)
    out = torch.empty(4, device=device)
    replay = record(lambda: torch.mul(x, 2, out=out), device)
    x.fill_(3.0)
    assert torch.equal(replay(), torch.full((4,), 6.0, device=device))
    # Reading a value back to the host cannot be recorded: None, and CUDA still works after it.
    assert record(lambda: float(x.sum()), device) is None
    assert float((x + 1).sum()) == 16.0


@pytest.mark.parametrize("shuffle", [1, 2])
def test_cuda_training_is_reproducible(tmp_path, shuffle):
    """Two trainings with the same seed give the same weights, bit for bit, as on the CPU:
    the network's padding and repeats sum their gradients in a fixed order there
    (stylize.deterministic), where torch's CUDA kernels add with atomics, and its kernels are
    folded by matrix products (transformer.fold_phases, fold_block), not indexing."""
    from stylize.config import TrainConfig
    from stylize.modelfile import load_model
    from stylize.train import prepare_training, train
    from stylize.transformer import TransformerConfig

    photos = _training_photos(tmp_path / "photos")
    config = TrainConfig(image_size=64, batch_size=2, steps=4, checkpoint_every=100, workers=0)
    weights = []
    for name in ("a.pt", "b.pt"):
        train(prepare_training(SAMPLES / "swirls.jpg", photos, tmp_path / name, config,
                               TransformerConfig(width=8, blocks=1, shuffle=shuffle), BackboneConfig(), "cuda",
                               overwrite=False))
        weights.append(load_model(tmp_path / name).network.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cuda_instance_norm_runs_as_group_norm_with_the_same_result(monkeypatch):
    """On CUDA, as on the CPU, the network's instance norm runs as a group norm in float32 (two
    launches a layer forward and backward instead of seven): the same output and gradients, to
    rounding, as torch's instance norm; under autocast torch's runs (group norm would be cast to
    float32)."""
    from stylize import transformer
    from stylize.transformer import FAST, TransformerNet, _group_norm_wanted

    make_deterministic(torch.device("cuda"))
    x = torch.rand(2, 3, 64, 72, device="cuda")
    assert _group_norm_wanted(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert not _group_norm_wanted(x)
    torch.manual_seed(0)
    net = TransformerNet(FAST).cuda().train()
    results = []
    for group in (True, False):
        monkeypatch.setattr(transformer, "_group_norm_wanted", lambda t, group=group: group)
        results.append(output_and_gradients(net, x))
    (group_out, group_grads), (plain_out, plain_grads) = results
    torch.testing.assert_close(group_out, plain_out, rtol=0, atol=1e-4)
    assert_gradients_close(group_grads, plain_grads, rtol=1e-3, atol_of_largest=1e-4)


def _training_photos(folder):
    from conftest import scene

    folder.mkdir()
    for i in range(4):
        scene(80, 72, seed=i).save(folder / f"p{i}.png")
    return folder


@pytest.mark.parametrize("shuffle,half", [(2, False), (2, True), (1, False)], ids=["fast", "fast-half", "classic"])
def test_cuda_graph_training_equals_eager_training(tmp_path, monkeypatch, shuffle, half):
    """Training steps replayed as a CUDA graph (after their eager warm-up steps and the recording)
    give the same losses and weights, bit for bit, as eager steps; a checkpoint between replays
    changes nothing."""
    from stylize import train as train_module
    from stylize.config import TrainConfig
    from stylize.cudagraph import WARM_UP
    from stylize.train import prepare_training, train
    from stylize.trainstep import TrainStep
    from stylize.transformer import TransformerConfig

    if half and not torch.cuda.is_bf16_supported():
        pytest.skip("float16 training scales its loss, which a graph cannot replay")
    made = []

    class Watched(TrainStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(train_module, "TrainStep", Watched)
    photos = _training_photos(tmp_path / "photos")
    results = []
    for graph in (True, False):
        # Loader workers, as on a GPU by default: the main process pins their batches in a thread of
        # its own, also while the graph is recorded (stylize.cudagraph.record).
        config = TrainConfig(image_size=64, batch_size=2, steps=WARM_UP + 4, checkpoint_every=WARM_UP + 2, workers=2,
                             half=half, cuda_graph=graph)
        job = prepare_training(SAMPLES / "swirls.jpg", photos, tmp_path / f"{graph}.pt", config,
                               TransformerConfig(width=8, blocks=1, shuffle=shuffle), BackboneConfig(), "cuda",
                               overwrite=False)
        seen = []
        train(job, on_progress=seen.append, report_every=0.0)
        results.append(([p.losses for p in seen], job.network.state_dict()))
    assert made[0].replaying, "the step was not recorded: record() returned None (see stylize.cudagraph)"
    assert not made[1].replaying
    (graph_losses, graph_weights), (eager_losses, eager_weights) = results
    assert len(graph_losses) == WARM_UP + 4 and graph_losses == eager_losses, (graph_losses, eager_losses)
    assert len({losses["total"] for losses in graph_losses}) == WARM_UP + 4  # each replay computed its own step
    differ = {k: float((graph_weights[k].float() - eager_weights[k].float()).abs().max()) for k in graph_weights
              if not torch.equal(graph_weights[k], eager_weights[k])}
    assert not differ, differ


def test_cuda_training_resumes_a_cpu_checkpoint_and_replays(tmp_path):
    """Adam's step count moves to the device (``capturable``) when a CPU checkpoint resumes on CUDA."""
    from stylize.config import TrainConfig
    from stylize.cudagraph import WARM_UP
    from stylize.train import checkpoint_path, prepare_training, train
    from stylize.transformer import TransformerConfig

    photos = _training_photos(tmp_path / "photos")
    network = TransformerConfig(width=8, blocks=1)
    config = TrainConfig(image_size=64, batch_size=2, steps=2, checkpoint_every=100, workers=0)
    out = tmp_path / "m.pt"
    train(prepare_training(SAMPLES / "swirls.jpg", photos, out, config, network, BackboneConfig(), "cpu",
                           overwrite=False))
    job = prepare_training(SAMPLES / "swirls.jpg", photos, tmp_path / "m2.pt",
                           dataclasses.replace(config, steps=WARM_UP + 4), network, BackboneConfig(), "cuda",
                           overwrite=False, resume=checkpoint_path(out))
    assert all(group["capturable"] for group in job.optimizer.param_groups)
    result = train(job)
    assert result.steps_done == WARM_UP + 4 and all(torch.isfinite(p).all() for p in job.network.parameters())


def test_cuda_fast_runs_of_same_size_frames_replay_the_eager_pass():
    """`stylize run --model` on frames of one size: from the second frame on, one recorded pass is
    replayed; every output is the eager pass's, bit for bit, in float32 and half precision."""
    from stylize.job import Fast
    from stylize.transformer import stylize_image

    photo = resize(load_image(SAMPLES / "chelsea.jpg").rgb, (96, 128))
    frames = [photo.roll(4 * i, dims=-1) for i in range(5)]
    for half in (False, True):
        fast = Fast("starry_night", "cuda", half=half)
        outputs = [fast.run([frame])[0] for frame in frames]
        assert fast._pass.replaying, "the pass was not recorded: record() returned None (see stylize.cudagraph)"
        for i, (frame, output) in enumerate(zip(frames, outputs)):
            eager = stylize_image(fast.network, frame, torch.device("cuda"), half)
            assert torch.equal(output, eager), (half, i, float((output - eager).abs().max()))


def test_cuda_training_step_records_with_torchs_own_error_if_any(tmp_path):
    """The recording that stylize.cudagraph.record makes of a training step, made here without its
    fallback: where the step cannot be recorded, this fails with torch's own message (the graph
    test above only sees the eager fallback)."""
    from stylize.config import TrainConfig
    from stylize.cudagraph import WARM_UP
    from stylize.dataset import StepBatches
    from stylize.train import prepare_training
    from stylize.trainstep import TrainStep
    from stylize.transformer import TransformerConfig

    photos = _training_photos(tmp_path / "photos")
    config = TrainConfig(image_size=64, batch_size=2, steps=WARM_UP + 1, checkpoint_every=100, workers=0)
    job = prepare_training(SAMPLES / "swirls.jpg", photos, tmp_path / "m.pt", config,
                           TransformerConfig(width=8, blocks=1), BackboneConfig(), "cuda", overwrite=False)
    step = TrainStep(job.network, job.extractor, job.loss_fn, job.optimizer,
                     torch.amp.GradScaler("cuda", enabled=False), config, job.device, static=True, graph=False)
    batches = StepBatches(job.photos, config.image_size, config.batch_size, config.seed, WARM_UP + 1)
    for k in range(WARM_UP):
        step(batches[k], k)
    step(batches[WARM_UP], WARM_UP)  # fills the buffers (and takes the step eagerly)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        parts = step._static_step()
    graph.replay()
    assert torch.isfinite(parts.total).item()


def test_cuda_tiled_objective_equals_the_whole_pass(setup):
    """On the GPU as on the CPU (tests/test_tiledloss.py): tiles give the whole pass's value and
    gradient in float32, to the rounding of cuDNN's kernels (TF32 where torch allows it), which
    may differ between a crop and the whole image."""
    _, gpu, content, style = setup
    content = resize(content, (176, 240)).cuda()
    config = RunConfig(size=240, half=False)
    whole = ScaleProblem(gpu, config, content, [style.cuda()], (176, 240))
    tiled = ScaleProblem(gpu, config, content, [style.cuda()], (176, 240), tile=64)
    assert tiled.tiled and len(tiled.tiled_loss.tiles) == 12
    image = torch.rand(1, 3, 176, 240, generator=torch.Generator().manual_seed(0)).cuda().requires_grad_()
    expected = whole.evaluate(image)
    gradient = image.grad.clone()
    parts = tiled.evaluate(image)
    torch.testing.assert_close(parts.total, expected.total.detach(), rtol=1e-3, atol=0)
    assert ((image.grad - gradient).norm() / gradient.norm()).item() < 1e-2


def test_cuda_optical_flow_is_the_cpus_and_the_same_every_time():
    """--init previous computes the flows on the run's device."""
    from stylize.flow import estimate_flow, flows_both_ways, reliable
    from stylize.motion import carry

    photo = resize(load_image(SAMPLES / "chelsea.jpg").rgb, (120, 180))
    before, after = photo[..., 20:84, 20:116], photo[..., 22:86, 17:113]
    cpu = estimate_flow(after, before)
    gpu = estimate_flow(after.cuda(), before.cuda())
    assert torch.equal(gpu, estimate_flow(after.cuda(), before.cuda()))
    assert (gpu.cpu() - cpu)[:, 8:-8, 8:-8].abs().max() < 0.05
    back = estimate_flow(before.cuda(), after.cuda())
    assert reliable(gpu, back).float().mean() > 0.8
    both = flows_both_ways(before.cuda(), after.cuda())  # one batch of two, whatever the size on a GPU
    assert (both[0] - gpu).abs().max() < 1e-4 and (both[1] - back).abs().max() < 1e-4
    moved = carry(photo[..., 20:84, 20:116].cuda(), before.cuda(), after.cuda(), (0.0, 0.0))
    assert moved.image.device.type == "cuda" and 0 <= moved.image.min() and moved.image.max() <= 1


def test_cuda_held_frames_are_the_cpus_and_the_same_every_time():
    """--model with --init previous holds each frame on the run's device (the flow there too)."""
    from stylize.job import Fast, Frame

    photo = resize(load_image(SAMPLES / "chelsea.jpg").rgb, (120, 180))
    frames = [LoadedImage(photo[..., 20:84, 20 + 3 * t:116 + 3 * t].contiguous(), None, Path(f"f{t}.png"))
              for t in range(2)]
    held = {}
    for device in ("cpu", "cuda"):
        model = Fast("starry_night", device, half=False, temporal_weight=2.0, frames=True)
        first, _ = model.run_frame(frames[0], None)
        held[device], moved = model.run_frame(frames[1], Frame(frames[0].rgb, first))
        assert moved is not None and held[device].device.type == "cpu"
        if device == "cuda":
            again, _ = model.run_frame(frames[1], Frame(frames[0].rgb, first))
            assert torch.equal(again, held[device])
    assert (held["cuda"] - held["cpu"]).abs().mean() < 0.01
