"""Dense optical flow (stylize.flow): every pixel's motion between two video frames, and
--init previous carrying the previous result along it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylize import flow as flow_module
from stylize import job
from stylize.config import BackboneConfig, InitKind, LossConfig, RunConfig
from stylize.features import FeatureExtractor, load_weights
from stylize.flow import estimate_flow, flows_both_ways, warp
from stylize.imageio import LoadedImage, load_image, resize
from stylize.losses import required_layers, temporal_consistency
from stylize.motion import Carried, carry, estimate_shift, hold, shift

from stylize.optimize import ScaleProblem, Temporal

from conftest import SAMPLES

SPEED = 3  # px a frame, the object's


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    weights = load_weights(BackboneConfig())
    return FeatureExtractor(weights.arch, weights.state, required_layers(LossConfig()))


@pytest.fixture(scope="module")
def wide() -> torch.Tensor:
    """A photo, 120x180 (flow needs a photo's texture at every scale, not pixel noise alone)."""
    return resize(load_image(SAMPLES / "chelsea.jpg").rgb, (120, 180))


@pytest.fixture(scope="module")
def thing() -> torch.Tensor:
    return resize(load_image(SAMPLES / "astronaut.jpg").rgb, (60, 60))[..., 10:40, 15:55]


def crossing(wide: torch.Tensor, thing: torch.Tensor, t: int) -> torch.Tensor:
    """A still 64x96 view with ``thing`` (30x40) crossing it SPEED px right a frame."""
    frame = wide[..., 20:84, 20:116].clone()
    frame[..., 16:46, 10 + SPEED * t:50 + SPEED * t] = thing
    return frame


@pytest.mark.parametrize("dy,dx", [(0, 3), (2, -5), (-6, 9)])
def test_a_pan_is_found_at_every_pixel(wide, dy, dx):
    """As --init previous finds it: the camera's shift first (phase correlation), then every pixel's."""
    before, after = wide[..., 30:94, 30:126], wide[..., 30 - dy:94 - dy, 30 - dx:126 - dx]
    sy, sx = estimate_shift(before, after)
    flow = estimate_flow(after, before, start=(-sy, -sx))  # each pixel of after to where it is in before
    error = (flow - torch.tensor([-dy, -dx]).view(2, 1, 1))[:, 10:-10, 10:-10].norm(dim=0)
    assert error.mean() < 0.05 and error.quantile(0.95) < 0.1


def test_an_object_moving_on_its_own_is_followed(wide, thing):
    before, after = crossing(wide, thing, 0), crossing(wide, thing, 1)
    flow = estimate_flow(after, before)
    on_it = flow[:, 20:42, 10 + SPEED + 4:50 + SPEED - 4]  # inside the object (its edges blur the flow)
    assert on_it[1].mean() == pytest.approx(-SPEED, abs=0.15) and on_it[0].abs().mean() < 0.15
    assert flow[:, 50:, :].abs().mean() < 0.1  # the still ground below it
    # Moved along the flow, the frame before is the frame after (but where the object uncovers).
    moved = warp(before, flow)
    uncovered = torch.zeros(64, 96, dtype=torch.bool)
    uncovered[16:46, 10:10 + SPEED] = True
    error = (moved - after).abs().mean(1)[0]
    assert error[~uncovered].mean() < 0.01
    assert (shift(before, 0, 0) - after).abs().mean(1)[0][~uncovered].mean() > 3 * error[~uncovered].mean()


def test_a_constant_flow_moves_as_a_shift(wide):
    image = wide[..., :40, :50]
    flow = torch.tensor([-2.0, 3.0]).view(2, 1, 1).expand(2, 40, 50)
    # The pixel at (y, x) is taken from (y - 2, x + 3): the picture moved down 2 and left 3.
    assert torch.allclose(warp(image, flow)[..., 2:, :-3], shift(image, 2, -3)[..., 2:, :-3], atol=1e-6)


def test_a_zoom_is_followed(wide):
    """What one shift cannot model: a 4 % zoom into the middle."""
    zoom = 1.04
    yy, xx = torch.meshgrid(torch.arange(60.0), torch.arange(80.0), indexing="ij")
    cy, cx = 29.5, 39.5
    truth = torch.stack((cy + (yy - cy) / zoom - yy, cx + (xx - cx) / zoom - xx))
    before = wide[..., 30:90, 40:120]
    after = warp(before, truth)
    flow = estimate_flow(after, before)
    assert (flow - truth)[:, 8:-8, 8:-8].norm(dim=0).mean() < 0.2
    assert (warp(before, flow) - after)[..., 8:-8, 8:-8].abs().mean() < 0.01


@pytest.mark.parametrize("one_batch_pixels", [flow_module.ONE_BATCH_PIXELS, 0])
def test_both_flows_at_once_are_the_two_found_one_at_a_time(wide, thing, monkeypatch, one_batch_pixels):
    """carry's two flows, there and back, are found in one batch (small frames; large ones on a
    CPU one at a time): the same flows either way."""
    monkeypatch.setattr(flow_module, "ONE_BATCH_PIXELS", one_batch_pixels)
    view, panned = wide[..., 20:84, 20:116], wide[..., 18:82, 25:121]  # 2 px up and 5 right: a pan
    for before, other, moved in ((crossing(wide, thing, 0), crossing(wide, thing, 1), (0.0, 0.0)),
                                 (view, panned, (2.0, -5.0))):
        backward, forward = flows_both_ways(before, other, moved)
        assert torch.allclose(backward, estimate_flow(other, before, (-moved[0], -moved[1])), atol=1e-4)
        assert torch.allclose(forward, estimate_flow(before, other, moved), atol=1e-4)
    assert backward[:, 10:-10, 10:-10].mean((1, 2)).tolist() == pytest.approx([-2.0, 5.0], abs=0.05)


def test_the_flow_is_the_same_every_time_and_of_large_frames_too(wide, thing, monkeypatch):
    before, after = crossing(wide, thing, 0), crossing(wide, thing, 1)
    assert torch.equal(estimate_flow(after, before), estimate_flow(after, before))
    # Frames larger than MAX_SIDE: the flow is found on them scaled down, and scaled up.
    monkeypatch.setattr(flow_module, "MAX_SIDE", 48)
    flow = estimate_flow(after, before)
    assert flow.shape == (2, 64, 96)
    assert flow[1, 22:40, 18:48].mean() == pytest.approx(-SPEED, abs=0.4)
    assert flow[:, 52:, :].abs().mean() < 0.2


def test_what_the_object_uncovers_does_not_match_and_the_rest_does(wide, thing):
    """flow.matching, where a network's frame is held to the result before it (motion.hold)."""
    before, after = crossing(wide, thing, 0), crossing(wide, thing, 1)
    noisy = [(f + 0.012 * torch.randn(f.shape, generator=torch.Generator().manual_seed(i))).clamp(0, 1)
             for i, f in enumerate((before, after))]  # a camera's noise (3/255) stays below the tolerance
    shown = flow_module.matching(noisy[1], noisy[0], estimate_flow(noisy[1], noisy[0]), 0.1)
    assert shown[20:42, 10:10 + SPEED].float().mean() < 0.5  # the strip the object uncovers (about 0.8 without the
    # motion boundary: the flow there points to the ground beside it, which looks alike)
    assert shown[4:60, 60:92].float().mean() > 0.98 and shown.float().mean() > 0.8  # (the object's edges: not)
    # The flow pointing outside the frame before: the strip a pan uncovers.
    assert not flow_module.matching(after, after, torch.full((2, 64, 96), -3.0), 0.1)[:, :3].any()


def test_where_the_frame_before_kept_the_photo_its_result_is_not_trusted(wide):
    """A still --mask over a pan: what comes from the part the mask kept as the photo is not held."""
    before, after = wide[..., 30:94, 30:126], wide[..., 30:94, 33:129]  # the picture moves 3 px left
    mask = torch.zeros(1, 1, 32, 48)
    mask[..., :30] = 1  # (half the frame's size: the mask is resized) the style left of column 60
    trusted = carry(1 - before, before, after, (0.0, -3.0), mask=mask).trusted[0, 0]
    assert trusted[8:-8, 58:61].max() < 0.05  # from columns 61-63 before: the photo (60: the resized edge)
    assert trusted[8:-8, 8:52].mean() > 0.95  # from the painted part
    held = hold(torch.zeros_like(after), 1 - before, before, after, (0.0, -3.0), 2.0, mask)
    assert held[..., 8:-8, 58:61].abs().max() < 0.05 and held[..., 8:-8, 8:52].mean() > 0.3


def test_pull_push_keeps_what_is_weighed_and_fills_the_rest_from_around_it():
    from stylize.motion import pull_push

    image = torch.zeros(1, 3, 40, 50)
    image[..., :, :25] = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)  # a colour on the left
    image[..., :, 25:] = torch.tensor([0.9, 0.1, 0.5]).view(1, 3, 1, 1)  # another on the right
    weight = torch.ones(1, 1, 40, 50)
    weight[..., 10:30, 5:15] = 0  # a hole in the left part
    weight[..., :, 40:] = 0  # and the right edge
    filled = pull_push(image * weight, weight)  # (what is in the holes must not matter)
    torch.testing.assert_close(filled[..., weight[0, 0] == 1], image[..., weight[0, 0] == 1])
    torch.testing.assert_close(filled[..., 14:26, 8:12], image[..., 14:26, 8:12], atol=0.02, rtol=0)
    torch.testing.assert_close(filled[..., :, 44:], image[..., :, 44:], atol=0.02, rtol=0)


def test_where_the_frame_before_kept_the_photo_the_start_is_the_painted_texture_around(wide, thing):
    """--mask mattes/ --invert-mask: the subject kept as the photo, the background painted. Where
    the subject moves off, the previous result is its photo: the next frame starts from the
    background painted around instead (in a clip, a pale trail was left behind the subject)."""
    frame = crossing(wide, thing, 0)
    painted = torch.full_like(frame, 0.5)  # the previous result: grey background...
    painted[..., 16:46, 10:50] = frame[..., 16:46, 10:50]  # ...and the subject's photo
    matte = torch.ones(1, 1, 64, 96)
    matte[..., 16:46, 10:50] = 0  # (inverted) the photo kept on the subject
    start = carry(painted, frame, frame, (0.0, 0.0), trust=False, mask=matte).image
    assert (start[..., 20:42, 14:46] - 0.5).abs().mean() < 0.01  # within the subject's place: the grey
    assert (start[..., :, 60:] - painted[..., :, 60:]).abs().max() < 0.01  # the painted part as it was
    assert (carry(painted, frame, frame, (0.0, 0.0), trust=False).image[..., 20:42, 14:46] - 0.5).abs().mean() > 0.1


def test_carry_moves_a_result_with_the_object(wide, thing):
    """A 'result' that is any picture drawn on the frame (here the photo's negative) is carried
    by the object's motion onto the next frame: what --init previous starts from."""
    before, after = crossing(wide, thing, 0), crossing(wide, thing, 1)
    carried = carry(1 - before, before, after, (0.0, 0.0))
    assert (carried.image - (1 - after))[..., 16:46, 10 + SPEED:50].abs().mean() < 0.01
    # Not trusted: the strip the object uncovers; trusted: nearly all the rest.
    trusted = carried.trusted[0, 0]
    assert trusted[20:42, 10:10 + SPEED].mean() < 0.5  # (its edge next to the object blurs)
    assert trusted[4:60, 60:92].mean() > 0.98 and trusted.mean() > 0.8
    assert carry(1 - before, before, after, (0.0, 0.0), trust=False).trusted is None


def _detail(image: torch.Tensor) -> float:
    """Fine detail away from the borders: the mean absolute Laplacian."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(torch.nn.functional.conv2d(image, kernel, groups=3)[..., 8:-8, 8:-8].abs().mean())


def test_a_result_carried_frame_after_frame_keeps_its_strokes_sharp(wide):
    """A zoom resamples the result every frame; bilinearly, its strokes blurred away (a fifth of
    their detail left after four frames of a 4 % zoom, where the stretch itself leaves more)."""
    zoom = 1.04
    yy, xx = torch.meshgrid(torch.arange(60.0), torch.arange(80.0), indexing="ij")
    truth = torch.stack((29.5 + (yy - 29.5) / zoom - yy, 39.5 + (xx - 39.5) / zoom - xx))
    before = wide[..., 30:90, 40:120]
    after = warp(before, truth, "bicubic")
    painted = resize(load_image(SAMPLES / "swirls.jpg").rgb, (60, 80))  # a result's brush strokes
    carried = painted
    for frame in range(4):
        carried = carry(carried, before, after, (0.0, 0.0)).image
        assert carried.min() >= 0 and carried.max() <= 1  # (bicubic overshoots; clamped)
        if frame == 0:
            assert _detail(carried) > 0.7 * _detail(painted)
    assert _detail(carried) > 0.45 * _detail(painted)


def test_the_strip_a_pan_uncovers_starts_from_texture_not_the_edge_smeared(wide):
    """Where the camera shows what the frame before did not, the moved result is the picture
    mirrored at its edge: repeating the edge drew streaks across the strip, which the frame's
    iterations did not paint out and the next frames then held."""
    before, after = wide[..., 20:84, 20:116], wide[..., 20:84, 26:122]  # the view 6 px right
    painted = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))  # strokes every way
    carried = carry(painted, before, after, estimate_shift(before, after)).image
    strip = carried[..., 4:-4, -6:]
    across = (strip[..., 1:] - strip[..., :-1]).abs().mean()
    down = (strip[..., 1:, :] - strip[..., :-1, :]).abs().mean()
    assert across > 0.6 * down  # (the edge repeated: across is 0.4 of down)
    assert (carried[..., 4:-4, 4:-10] - painted[..., 4:-4, 10:-4]).abs().mean() < 0.02  # the rest moved (not: 0.33)


def test_init_previous_keeps_the_texture_on_a_moving_object(wide, thing, painting, monkeypatch):
    """Against the previous result moved by the camera's shift alone (before the optical flow):
    the painted object changes less from frame to frame when its texture moves with it."""
    style = load_image(painting)
    config = RunConfig(size=96, init=InitKind.previous, iterations=(20, 10), scales=(48,))

    def object_change(carry_fn) -> float:
        monkeypatch.setattr(job, "carry", carry_fn)
        stylizer = job.Iterative(config, BackboneConfig(), "cpu")
        previous, results = None, []
        for t in range(3):
            content = LoadedImage(rgb=crossing(wide, thing, t), alpha=None, path=Path(f"f{t}.png"))
            result, _ = stylizer.run_frame(content, [style], previous)
            previous = job.Frame(content.rgb, result.image)
            results.append(result.image)
        # The object's pixels in each frame against the same points a frame before.
        return sum(float((b[..., 18:44, 12 + SPEED * t:48 + SPEED * t]
                          - a[..., 18:44, 12 + SPEED * (t - 1):48 + SPEED * (t - 1)]).abs().mean())
                   for t, (a, b) in enumerate(zip(results, results[1:]), start=1))

    with_flow = object_change(carry)
    shift_alone = object_change(lambda result, before, after, moved, trust, mask: Carried(shift(result, *moved), None))
    assert with_flow < 0.8 * shift_alone


def test_the_temporal_term_weighs_the_difference_where_the_flow_holds():
    g = torch.Generator().manual_seed(0)
    image, target = torch.rand(1, 3, 8, 10, generator=g), torch.rand(1, 3, 8, 10, generator=g)
    weights = torch.zeros(1, 1, 8, 10)
    weights[..., :4, :] = 1
    expected = (image - target)[..., :4, :].pow(2).sum() / image.numel()  # over every pixel, as Ruder et al.
    torch.testing.assert_close(temporal_consistency(image, target, weights), expected)
    assert temporal_consistency(image, target, torch.zeros(1, 1, 8, 10)) == 0


def test_a_frames_objective_holds_its_temporal_term_tiled_or_whole(extractor):
    """ScaleProblem: the term (and its gradient) added to the objective, the same in tiles."""
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(1, 3, 96, 128, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    target, weights = torch.rand(1, 3, 96, 128, generator=g), (torch.rand(1, 1, 96, 128, generator=g) > 0.3).float()
    config = RunConfig(size=128, half=False)
    temporal = Temporal(target, weights, 50.0)
    start = torch.rand(1, 3, 96, 128, generator=g)
    results = {}
    for name, tile, term in (("plain", None, None), ("whole", None, temporal), ("tiled", 64, temporal)):
        problem = ScaleProblem(extractor, config, content, [style], (96, 128), tile=tile, temporal=term)
        image = start.clone().requires_grad_()
        parts = problem.evaluate(image)
        results[name] = (parts, image.grad.clone(), problem.value(image))
    plain, whole, tiled = results["plain"], results["whole"], results["tiled"]
    assert plain[0].temporal is None and "temporal" not in plain[0].as_floats()
    expected = 50.0 * temporal_consistency(start, target, weights)
    torch.testing.assert_close(whole[0].temporal.detach(), expected)
    torch.testing.assert_close(whole[0].total.detach(), plain[0].total.detach() + expected)
    own = 50.0 * 2 * (start - target) * weights / start.numel()  # the term's gradient
    torch.testing.assert_close(whole[1], plain[1] + own, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(tiled[0].total.detach(), whole[0].total.detach(), rtol=1e-5, atol=0)
    assert ((tiled[1] - whole[1]).norm() / whole[1].norm()).item() < 1e-4
    torch.testing.assert_close(tiled[2].total, whole[2].total, rtol=1e-5, atol=0)
    assert whole[2].as_floats()["temporal"] == pytest.approx(float(expected), rel=1e-5)
