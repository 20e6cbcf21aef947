"""The iterative optimiser, with the real bundled VGG at small sizes."""

import dataclasses

import pytest
import torch

from stylize.config import BackboneConfig, InitKind, LossConfig, OptimizerKind, RunConfig, StyleLossKind
from stylize.color import rgb_to_yiq
from stylize.errors import ImageError, InputError
from stylize.features import FeatureExtractor, load_weights
from stylize.losses import required_layers
from stylize.imageio import load_image, resize
from stylize.optimize import ScaleProblem, plan_schedule, run_iterative

from conftest import SAMPLES, HostReads


@pytest.fixture(scope="module")
def extractor():
    weights = load_weights(BackboneConfig())
    return FeatureExtractor(weights.arch, weights.state, required_layers(LossConfig()))


@pytest.fixture(scope="module")
def pair():
    content = resize(load_image(SAMPLES / "chelsea.jpg").rgb, (96, 128))
    style = resize(load_image(SAMPLES / "swirls.jpg").rgb, (96, 128))
    return content, style


def test_default_schedule_is_coarse_to_fine():
    # The first scale nearest 256 px, 100 iterations at each scale but the last, 50 there.
    plan = plan_schedule(384, 512, RunConfig(size=512), min_side=16)
    assert plan == [((192, 256), 100), ((384, 512), 50)]
    assert plan_schedule(768, 1024, RunConfig(size=1024), 16) == [((192, 256), 100), ((384, 512), 100),
                                                                  ((768, 1024), 50)]
    assert [hw for hw, _ in plan_schedule(768, 1024, RunConfig(size=2048), 16)][0] == (192, 256)
    assert plan_schedule(384, 512, RunConfig(size=300), 16) == [((112, 150), 100), ((225, 300), 50)]
    assert plan_schedule(384, 512, RunConfig(size=100), 16) == [((75, 100), 50)]
    four = plan_schedule(384, 512, RunConfig(size=512, scales=4), min_side=16)
    assert four == [((48, 64), 100), ((96, 128), 100), ((192, 256), 100), ((384, 512), 50)]


def test_hand_over_adds_the_detail_that_upsampling_loses(pair):
    from stylize.optimize import hand_over

    content, _ = pair
    small = resize(content, (48, 64))
    # A coarse result equal to the photo hands over the full-size photo itself, not a blurred copy.
    assert torch.allclose(hand_over(small, small, content), content, atol=1e-6)
    painted = (small * 0.5 + 0.25).clamp(0, 1)
    result = hand_over(painted, small, content)
    assert result.shape == content.shape
    blurred = resize(painted, (96, 128))
    detail = lambda x: (x - resize(resize(x, (48, 64)), (96, 128))).abs().mean()  # noqa: E731
    assert detail(result) > 2 * detail(blurred)  # the photo's edges are back


def test_schedule_options():
    assert [hw for hw, _ in plan_schedule(400, 400, RunConfig(size=400, scales=1), 16)] == [(400, 400)]
    plan = plan_schedule(400, 400, RunConfig(size=400, scales=(100, 200), iterations=(5, 6, 7)), 16)
    assert plan == [((100, 100), 5), ((200, 200), 6), ((400, 400), 7)]
    with pytest.raises(ImageError, match="3 scales"):
        plan_schedule(400, 400, RunConfig(size=400, scales=(100, 200), iterations=(5, 6)), 16)


def test_tiny_scales_are_skipped_for_panoramas():
    plan = plan_schedule(40, 1000, RunConfig(size=1000, scales=(100, 500)), min_side=16)
    assert [hw for hw, _ in plan] == [(20, 500), (40, 1000)]


@pytest.mark.parametrize("style_shape,style_scale", [((16, 300), 1.0), ((96, 128), 0.05)])
def test_narrow_or_shrunk_styles_still_reach_the_deepest_layer(extractor, pair, style_shape, style_scale):
    # At 64 px a 16x300 strip would be 3 px tall, and --style-scale 0.05 makes any style 3 px long:
    # too small for relu5_1 (16 px). The style is then used with its short side at 16 px.
    content, style = pair
    config = RunConfig(size=64, iterations=(2,), style_scale=style_scale, half=False)
    result = run_iterative(content, [resize(style, style_shape)], config, extractor)
    assert result.image.shape == (1, 3, 48, 64) and torch.isfinite(torch.tensor(result.losses["style"]))


def _objective(extractor, config, content, style, image):
    with torch.no_grad():
        return ScaleProblem(extractor, config, content, [style], tuple(content.shape[-2:]))(image)


def test_a_mask_confines_the_style_loss_to_where_it_is_white(extractor, pair):
    content, style = pair
    config, size = RunConfig(half=False), tuple(content.shape[-2:])
    image = torch.cat([content[..., :64], style[..., 64:]], dim=-1)  # the photo on the left, the painting right
    with torch.no_grad():
        plain = ScaleProblem(extractor, config, content, [style], size)(image)
        # A mask of any size (here half the image's) is resized to each style layer's size.
        whole = ScaleProblem(extractor, config, content, [style], size, mask=torch.ones(1, 1, 48, 64))(image)
        right = torch.zeros(1, 1, 48, 64)
        right[..., 32:] = 1.0
        guided = ScaleProblem(extractor, config, content, [style], size, mask=right)(image)
    assert whole.style.item() == pytest.approx(plain.style.item(), rel=1e-4)
    # Judged on the painted half alone, the image is much closer to the painting's statistics.
    assert guided.style.item() < 0.5 * plain.style.item()
    assert guided.content.item() == pytest.approx(plain.content.item(), rel=1e-5)  # the content: everywhere


def test_a_masked_run_is_budgeted_its_guided_features():
    from stylize.features import layer_values_per_pixel
    from stylize.optimize import GUIDE_BYTES_PER_VALUE, estimate_memory

    # The default style layers' outputs: 64 + 128/4 + 256/16 + 512/64 + 512/256 values per pixel.
    assert layer_values_per_pixel("vgg16", ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]) == 122
    extra = estimate_memory("vgg16", RunConfig(), 768, 1024, masked=True) - estimate_memory("vgg16", RunConfig(),
                                                                                            768, 1024)
    assert extra == pytest.approx(GUIDE_BYTES_PER_VALUE * 122 * 768 * 1024, abs=1)


@pytest.mark.parametrize("size", [64, 128])
def test_lbfgs_converges_at_every_size(extractor, pair, size):
    """Style loss falls by a large factor at each size, while the photo stays recognisable."""
    content, style = (resize(t, (size * 3 // 4, size)) for t in pair)
    config = RunConfig(size=size, scales=1, iterations=(40,))
    result = run_iterative(content, [style], config, extractor)
    start = _objective(extractor, config, content, style, content)
    end = _objective(extractor, config, content, style, result.image)
    assert end.style < start.style / 10
    # The photo stays recognisable: its luminance pattern survives, and its VGG content features
    # are much closer than the painting's.
    painting = _objective(extractor, config, content, style, style)
    assert end.content < 0.75 * painting.content
    assert _luminance_correlation(result.image, content) > 0.5
    assert abs(_luminance_correlation(result.image, style)) < 0.3


def _luminance_correlation(a, b):
    lum = lambda x: (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).flatten()  # noqa: E731
    return torch.corrcoef(torch.stack([lum(a), lum(b)]))[0, 1].item()


def test_same_seed_same_output_random_init(extractor, pair):
    content, style = pair
    config = RunConfig(size=64, iterations=(4,), init=InitKind.random, seed=3)
    a = run_iterative(content, [style], config, extractor).image
    b = run_iterative(content, [style], config, extractor).image
    c = run_iterative(content, [style], RunConfig(size=64, iterations=(4,), init=InitKind.random, seed=4),
                      extractor).image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_multiscale_reports_progress_for_each_scale(extractor, pair):
    content, style = pair
    seen = []
    config = RunConfig(size=128, scales=(64,), iterations=(3, 2))
    result = run_iterative(content, [style], config, extractor, on_progress=seen.append)
    assert [(p.scale, p.iteration, p.width) for p in seen] == [(0, 1, 64), (0, 2, 64), (0, 3, 64),
                                                               (1, 1, 128), (1, 2, 128)]
    assert result.image.shape == (1, 3, 96, 128) and not result.interrupted
    assert all(p.losses["total"] > 0 for p in seen)
    # For the ETA: each iteration weighs its scale's pixel count (3 x 64x48 against 2 x 128x96).
    assert [p.work_done for p in seen] == pytest.approx([1 / 11, 2 / 11, 3 / 11, 7 / 11, 1.0])


def test_ctrl_c_returns_best_image_so_far(extractor, pair):
    content, style = pair

    def interrupt(progress):
        if progress.iteration == 3:
            raise KeyboardInterrupt

    result = run_iterative(content, [style], RunConfig(size=64, iterations=(10,)), extractor, on_progress=interrupt)
    assert result.interrupted
    assert result.image.shape == (1, 3, 48, 64) and torch.isfinite(result.image).all()
    assert result.losses["total"] > 0


def test_adam_and_meanstd_reduce_the_loss(extractor, pair):
    content, style = pair
    config = RunConfig(size=64, iterations=(30,), optimizer=OptimizerKind.adam,
                       loss=LossConfig(style_loss=StyleLossKind.meanstd))
    small_content, small_style = resize(content, (48, 64)), resize(style, (48, 64))
    result = run_iterative(content, [style], config, extractor)
    start = _objective(extractor, config, small_content, small_style, small_content)
    end = _objective(extractor, config, small_content, small_style, result.image)
    assert end.total < start.total / 2
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_preserve_color_keeps_the_photos_chrominance(extractor, pair):
    content, style = pair
    config = RunConfig(size=64, iterations=(5,), preserve_color=True)
    result = run_iterative(content, [style], config, extractor)
    expected_iq = rgb_to_yiq(resize(content, (48, 64)))[:, 1:]
    got_iq = rgb_to_yiq(result.image)[:, 1:]
    assert (got_iq - expected_iq).abs().mean() < 0.01


def test_match_color_gives_the_painting_the_photos_colour_statistics():
    from stylize.color import match_color

    torch.manual_seed(0)
    painting = 0.2 + 0.3 * torch.rand(1, 3, 40, 50) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    photo = 0.3 + 0.4 * torch.rand(1, 3, 30, 20) ** 2
    moved = match_color(painting, photo)
    assert moved.shape == painting.shape and 0 <= moved.min() and moved.max() <= 1
    mean, cov = (lambda x: (x.reshape(3, -1).mean(1), torch.cov(x.reshape(3, -1))))(photo)
    torch.testing.assert_close(moved.reshape(3, -1).mean(1), mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(moved.reshape(3, -1)), cov, atol=1e-4, rtol=0)
    # The painting's own structure stays: its pixels are moved by one affine map.
    assert torch.corrcoef(torch.stack([moved[0, 0].flatten(), painting[0, 0].flatten()]))[0, 1].abs() > 0.5
    torch.testing.assert_close(match_color(photo, photo), photo, atol=1e-4, rtol=0)


def test_match_color_takes_the_photos_palette_for_each_photo_of_a_batch(extractor, pair):
    """With --match-color the result's colours move towards the photo's; in a batch, each photo
    recolours the style its own way (the cached statistics of another photo are not used)."""
    from stylize.optimize import StyleCache

    content, style = pair
    config = RunConfig(size=64, iterations=(10,))
    plain = run_iterative(content, [style], config, extractor).image
    matched = run_iterative(content, [style], dataclasses.replace(config, match_color=True), extractor).image
    photo_mean = resize(content, (48, 64)).mean((2, 3))
    assert (matched.mean((2, 3)) - photo_mean).abs().sum() < (plain.mean((2, 3)) - photo_mean).abs().sum() / 2
    cache, other = StyleCache(), 1 - content  # another photo, the colours inverted
    match = dataclasses.replace(config, match_color=True)
    run_iterative(other, [style], match, extractor, cache=cache)
    assert torch.equal(run_iterative(content, [style], match, extractor, cache=cache).image, matched)


def test_style_blend_moves_the_result_towards_the_heavier_style(extractor, pair):
    content, style = pair
    flat = torch.full_like(style, 0.5)
    flat[:, 0] = 0.9  # a plain red 'painting'
    common = dict(size=64, iterations=(15,))
    red_heavy = run_iterative(content, [style, flat], RunConfig(style_blend=(0.1, 0.9), **common), extractor).image
    swirl_heavy = run_iterative(content, [style, flat], RunConfig(style_blend=(0.9, 0.1), **common), extractor).image
    redness = lambda img: (img[:, 0] - img[:, 1:].mean(dim=1)).mean()  # noqa: E731
    assert redness(red_heavy) > redness(swirl_heavy)


def test_half_precision_runs_the_vgg_in_bfloat16_and_follows_float32(extractor, pair):
    """--half: each evaluation's convolutions run in bfloat16, the targets are computed in float32;
    the objective and a short run's result stay near float32's."""
    content, style = pair
    size = tuple(content.shape[-2:])
    seen: list[torch.dtype] = []
    hook = extractor.body[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        problem = ScaleProblem(extractor, RunConfig(half=True), content, [style], size)
        assert problem.half and set(seen) == {torch.float32}  # content and style targets
        seen.clear()
        parts = problem(content.clone())
        assert seen == [torch.bfloat16]
    finally:
        hook.remove()
    full = ScaleProblem(extractor, RunConfig(half=False), content, [style], size)
    assert not full.half
    assert parts.total.item() == pytest.approx(full(content.clone()).total.item(), rel=0.03)
    runs = {half: run_iterative(content, [style], RunConfig(size=128, scales=1, iterations=(15,), half=half),
                                extractor).image for half in (False, True)}
    assert not torch.equal(runs[False], runs[True])  # it did run in lower precision
    start = _objective(extractor, RunConfig(half=False), content, style, content).total.item()
    ends = {h: _objective(extractor, RunConfig(half=False), content, style, image).total.item()
            for h, image in runs.items()}
    assert ends[True] < start / 2 and ends[True] == pytest.approx(ends[False], rel=0.15)


def test_half_precision_needs_bfloat16_for_the_iterative_method(extractor, pair, monkeypatch):
    """Where --half would mean float16 (MPS, older GPUs), the iterative method refuses it."""
    import stylize.job
    import stylize.optimize

    content, style = pair
    monkeypatch.setattr(stylize.optimize, "half_dtype", lambda device: torch.float16)
    with pytest.raises(InputError, match="needs bfloat16"):
        ScaleProblem(extractor, RunConfig(half=True), content, [style], tuple(content.shape[-2:]))
    assert not ScaleProblem(extractor, RunConfig(half=False), content, [style], tuple(content.shape[-2:])).half
    # A run (or a batch) is refused before its VGG is loaded.
    from stylize.job import Iterative

    monkeypatch.setattr(stylize.job, "load_loss_extractor", lambda *a: pytest.fail("loaded the VGG"))
    with pytest.raises(InputError, match="needs bfloat16"):
        Iterative(RunConfig(half=True), BackboneConfig(), "cpu")


def _corrupt_direction(run, h_diag: float) -> None:
    """Forget L-BFGS's memory and scale its next direction -g by ``h_diag`` (negative: uphill)."""
    lbfgs = run.optimizer
    lbfgs._pairs.clear()
    lbfgs._last_step.zero_()  # no new curvature pair from the last step
    lbfgs._scale = h_diag


def test_a_step_waits_on_the_device_at_most_twice(extractor, pair):
    """L-BFGS's two decisions (keep the new pair? does the direction descend?); torch's L-BFGS
    read each of its two-loop's coefficients back too: 44 times a step at 20 pairs. (The losses
    are read in one copy, which this CPU count does not see.)"""
    from stylize.optimize import LBFGS_HISTORY, ScaleOptimizer

    content, style = (resize(t, (48, 64)) for t in pair)
    config = RunConfig(size=64, scales=1, half=False)
    run = ScaleOptimizer(ScaleProblem(extractor, config, content, [style], (48, 64)), config, content)
    for _ in range(LBFGS_HISTORY + 2):
        run.step()
    with HostReads() as reads:
        run.step()
    assert 1 <= reads.count <= 2


def test_lbfgs_restarts_when_it_stops_moving_and_keeps_its_memory_uphill(extractor, pair):
    from stylize.optimize import ScaleOptimizer

    content, style = (resize(t, (48, 64)) for t in pair)
    config = RunConfig(size=64, scales=1, half=False)
    problem = ScaleProblem(extractor, config, content, [style], (48, 64))
    run = ScaleOptimizer(problem, config, content)
    for _ in range(5):
        run.step()
    # No descent direction: L-BFGS leaves the pixels alone, and would forever.
    _corrupt_direction(run, -1.0)
    stuck = run.image.detach().clone()
    run.step()
    assert torch.equal(run.image.detach(), stuck)
    before = run.last_losses["total"]
    run.step()  # restarted: moves again
    run.step()
    assert not torch.equal(run.image.detach(), stuck) and run.last_losses["total"] < before
    # A far too long step goes uphill, but the curvature learnt after it is kept.
    for _ in range(3):
        run.step()
    _corrupt_direction(run, 1e4)
    optimizer, before = run.optimizer, run.last_losses["total"]
    run.step()
    run.step()
    assert run.last_losses["total"] > before  # it did go uphill
    assert run.optimizer is optimizer and len(optimizer._pairs) > 0  # the memory kept, and added to


def test_cuda_graphs_are_for_cuda_only():
    from stylize.cudagraph import record

    assert record(lambda: torch.ones(2) * 2, torch.device("cpu")) is None


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_objective_replayed_from_one_recording_takes_the_eager_steps(extractor, pair, monkeypatch, optimizer):
    """What CUDA does with each scale's objective, emulated on the CPU (conftest.emulated_record):
    recorded once, then replayed with none of its Python, the pixels changing in place. The
    run is the eager run, bit for bit, for both optimisers; at each scale the objective was
    recorded once."""
    import stylize.optimize
    from conftest import emulated_record

    recordings = []

    def counted(fn, device, warm_up=0):
        recordings.append(device)
        return emulated_record(fn, device)

    content, style = pair
    config = RunConfig(size=128, scales=2, iterations=(8, 6), half=False, optimizer=OptimizerKind(optimizer))
    eager = run_iterative(content, [style], dataclasses.replace(config, cuda_graph=False), extractor)
    monkeypatch.setattr(stylize.optimize, "record", counted)
    replayed = run_iterative(content, [style], config, extractor)
    assert len(recordings) == 2
    assert torch.equal(replayed.image, eager.image) and replayed.losses == eager.losses
