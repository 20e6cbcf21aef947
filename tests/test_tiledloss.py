"""Iterative runs in tiles: the same objective and gradient as one pass, in a tile's memory."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import stylize.job
from stylize.cli import app
from stylize.config import BackboneConfig, LossConfig, RunConfig, StyleLossKind
from stylize.features import FeatureExtractor, load_weights, reach
from stylize.imageio import load_image, read_comment
from stylize.losses import PerceptualLoss, required_layers, style_statistics
from stylize.optimize import ScaleProblem, estimate_memory, estimate_tiled_memory
from stylize.recipe import Recipe
from stylize.tiledloss import TiledObjective, plan_tiles, tiled_statistics

from conftest import scene, stripes

runner = CliRunner()


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    weights = load_weights(BackboneConfig())
    return FeatureExtractor(weights.arch, weights.state, required_layers(LossConfig()))


def test_tiles_cover_the_image_once_and_crops_start_on_the_pooling_grid():
    tiles = plan_tiles(200, 264, 64, 73, 16)
    covered = torch.zeros(200, 264, dtype=torch.int32)
    for tile in tiles:
        top, bottom, left, right = tile.inner
        covered[top:bottom, left:right] += 1
        ctop, cbottom, cleft, cright = tile.crop
        assert ctop % 16 == 0 and cleft % 16 == 0 and 0 <= ctop <= top and bottom <= cbottom <= 200
        assert top - ctop in (0, top, 80) and cright - right in (0, 264 - right, 80)  # the margin, a stride multiple
    assert torch.equal(covered, torch.ones_like(covered))
    assert reach("vgg16", ["relu5_1"]) == (73, 16) and reach("vgg16", ["relu4_2"]) == (41, 8)


@pytest.mark.parametrize("kind", list(StyleLossKind))
def test_tiled_value_and_gradient_equal_one_pass_over_the_whole_image(extractor, kind):
    """Sides that are not multiples of the deepest stride, tiles much smaller than the image."""
    config = LossConfig(style_loss=kind)
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 152, 216, generator=g), torch.rand(1, 3, 80, 80, generator=g)
    layers = dict(config.style_layers)
    targets = style_statistics({n: f for n, f in extractor(style).items() if n in layers}, kind)
    image = torch.rand(1, 3, 152, 216, generator=g).requires_grad_()
    with torch.no_grad():
        content_targets = extractor(content)
    whole = PerceptualLoss(config, targets)(image, extractor(image), content_targets)
    whole.total.backward()
    expected = image.grad.clone()
    tiled = TiledObjective(extractor, config, content, targets, tile=64, half=False)
    assert len(tiled.tiles) == 12
    image.grad = None
    parts = tiled.evaluate(image)
    for name in ("total", "content", "style", "tv"):
        torch.testing.assert_close(getattr(parts, name), getattr(whole, name).detach(), rtol=1e-5, atol=0)
    assert ((image.grad - expected).norm() / expected.norm()).item() < 1e-5
    torch.testing.assert_close(tiled.value(image).total, parts.total, rtol=1e-6, atol=0)


def test_a_style_image_larger_than_a_tile_gives_the_same_statistics_in_tiles(extractor):
    image = torch.rand(1, 3, 150, 230, generator=torch.Generator().manual_seed(1))
    layers = ["relu1_1", "relu3_1", "relu5_1"]
    features = extractor(image)
    for kind in StyleLossKind:
        whole = style_statistics({n: features[n] for n in layers}, kind)
        tiled = tiled_statistics(extractor, image, layers, kind, tile=64)
        for name in layers:
            torch.testing.assert_close(tiled[name], whole[name], rtol=1e-4, atol=1e-6)


def test_the_memory_of_a_tiled_run_grows_with_the_image_far_slower_than_a_whole_run():
    config = RunConfig()
    whole = [estimate_memory("vgg16", config, side, side) for side in (1024, 4096)]
    tiled = [estimate_tiled_memory("vgg16", config, side, side, 512) for side in (1024, 4096)]
    assert tiled[0] < whole[0] and tiled[1] < whole[1] / 4


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def pair(tmp_path):
    photo, painting = tmp_path / "photo.png", tmp_path / "painting.png"
    scene(240, 160).save(photo)
    stripes(96, 96).save(painting)
    return photo, painting


def test_a_run_in_tiles_reaches_the_objective_of_a_whole_run_and_remakes_itself(pair, tmp_path, monkeypatch):
    photo, painting = pair
    monkeypatch.chdir(tmp_path)
    common = ["--size", "192", "--scales", "96", "--iterations", "6,4", "--no-half", "--quiet"]
    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    assert _invoke("run", photo, painting, "-o", whole, *common).exit_code == 0
    result = _invoke("run", photo, painting, "-o", tiled, "--tile", "128", *common)
    assert result.exit_code == 0, result.output
    recipes = [Recipe.from_text(read_comment(path)) for path in (whole, tiled)]
    assert dict(recipes[1].options)["--tile"] == "128" and "--tile" not in dict(recipes[0].options)
    losses = [dict(r.loss)["total"] for r in recipes]
    assert abs(losses[1] - losses[0]) < 0.02 * losses[0]
    again = tmp_path / "again.png"
    result = _invoke(*recipes[1].command()[1:], "-o", again, "--quiet")
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == tiled.read_bytes()


def test_a_run_too_large_for_memory_whole_is_tiled_and_one_too_large_for_tiles_refused(pair, tmp_path,
                                                                                       monkeypatch):
    """With memory for a tiled run of 256 px tiles but not for the whole, the largest tile that
    fits is taken (every 64 px); with less than the smallest tiles need, one line and exit 2."""
    photo, painting = pair
    config = RunConfig(size=480, half=False)
    budget = estimate_tiled_memory("vgg16", config, 320, 480, 256)
    assert estimate_tiled_memory("vgg16", config, 320, 480, 320) > budget
    assert estimate_memory("vgg16", config, 320, 480) > budget
    monkeypatch.setattr(stylize.job, "memory_budget", lambda device: budget)
    out = tmp_path / "out.png"
    result = _invoke("run", photo, painting, "-o", out, "--size", "480", "--scales", "1", "--iterations", "1",
                     "--no-half", "-q")
    assert result.exit_code == 0, result.output
    assert dict(Recipe.from_text(read_comment(out)).options)["--tile"] == "256"
    assert load_image(out).size == (320, 480)
    monkeypatch.setattr(stylize.job, "memory_budget", lambda device: budget // 4)
    refused = _invoke("run", photo, painting, "-o", tmp_path / "no.png", "--size", "480", "-q")
    assert refused.exit_code == 2 and "in tiles of 128 px" in refused.output and "use --size" in refused.output
    assert not (tmp_path / "no.png").exists()


def test_tiles_are_refused_below_their_least_size(pair, tmp_path):
    photo, painting = pair
    small = _invoke("run", photo, painting, "--tile", "100", "-o", tmp_path / "o.png")
    assert small.exit_code == 2 and "--tile must be 0 (never tile) or at least 128" in small.output
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("kind", list(StyleLossKind))
def test_a_masks_guided_objective_in_tiles_equals_the_whole_pass(extractor, kind):
    """Gatys et al. (2017)'s guided statistics are sums too: each position weighs its guide's square."""
    g = torch.Generator().manual_seed(2)
    content, style = torch.rand(1, 3, 152, 216, generator=g), torch.rand(1, 3, 80, 80, generator=g)
    mask = torch.zeros(1, 1, 152, 216)
    mask[..., :120], mask[..., 120:150] = 1.0, 0.5  # the style on the left, half of it in a band
    config = RunConfig(size=216, half=False, loss=LossConfig(style_loss=kind))
    whole = ScaleProblem(extractor, config, content, [style], (152, 216), mask=mask)
    tiled = ScaleProblem(extractor, config, content, [style], (152, 216), mask=mask, tile=64)
    image = torch.rand(1, 3, 152, 216, generator=g).requires_grad_()
    expected = whole.evaluate(image)
    gradient = image.grad.clone()
    parts = tiled.evaluate(image)
    torch.testing.assert_close(parts.total, expected.total.detach(), rtol=1e-5, atol=0)
    assert ((image.grad - gradient).norm() / gradient.norm()).item() < 1e-5


def test_the_progress_of_a_tiled_run_counts_its_tiles_work():
    """A tiled scale's iterations cost more (crops with margins, two forward passes): the share of
    the work done when it starts is smaller, so the time left is not promised too soon."""
    from stylize.optimize import work_done

    schedule = [((384, 512), 100), ((768, 1024), 100), ((1536, 2048), 50)]
    plain = work_done(schedule, 1, 100)
    tiled = work_done(schedule, 1, 100, (1024, 73, 16))
    assert plain == pytest.approx((384 * 512 + 768 * 1024) * 100 / (384 * 512 * 100 + 768 * 1024 * 100
                                                                    + 1536 * 2048 * 50))
    crops = (1024 + 80) * (1024 + 80) + (1024 + 80) * (1024 + 80) + (512 + 80) * (1024 + 80) * 2
    assert tiled == pytest.approx((384 * 512 + 768 * 1024) * 100 / ((384 * 512 + 768 * 1024) * 100
                                                                    + crops * 4 / 3 * 50))
