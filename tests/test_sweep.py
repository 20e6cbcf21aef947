"""Sweeps: several --style-weight or --style-scale values, one result for each, side by side."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylize.batch import Source, pair, plan
from stylize.cli import app
from stylize.config import BackboneConfig, LossConfig, Pairing, RunConfig, sweep
from stylize.errors import OutputError
from stylize.features import FeatureExtractor, load_weights
from stylize.losses import required_layers
from stylize.imageio import load_image, read_comment, resize
from stylize.optimize import StyleCache, run_iterative
from stylize.recipe import Recipe

from conftest import counted_statistics, scene

runner = CliRunner()
FAST = ["--size", "40", "--iterations", "3", "--quiet"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_sweep_is_every_combination_labelled_by_what_varies():
    assert [(v.style_weight, v.style_scale, v.label) for v in sweep((30.0,), (1.0,))] == [(30.0, 1.0, "")]
    assert [v.label for v in sweep((10.0, 1e-05, 30.0, 10.0), (1.0,))] == ["sw10", "sw1e-05", "sw30"]
    assert [v.label for v in sweep((10.0, 100.0), (0.5, 1.0))] == ["sw10_ss0.5", "sw10_ss1", "sw100_ss0.5",
                                                                      "sw100_ss1"]
    assert [v.label for v in sweep((30.0,), (0.5, 2.0))] == ["ss0.5", "ss2"]
    varied = sweep((10.0, 100.0), (0.5,))[1].apply(RunConfig())
    assert (varied.loss.style_weight, varied.style_scale, varied.loss.content_weight) == (100.0, 0.5, 1.0)


def test_each_variant_gets_its_own_output_and_a_template_without_variant_is_refused(tmp_path):
    photo = Source(tmp_path / "cat.jpg")
    pairs = pair([photo], [(tmp_path / "swirls.png",)], Pairing.product)
    jobs = plan(pairs, tmp_path / "out", "{content}_x_{style}_{variant}.{ext}", "png", variants=("sw10", "sw30"))
    assert [(j.output.name, j.column) for j in jobs] == [("cat_x_swirls_sw10.png", "swirls (sw10)"),
                                                          ("cat_x_swirls_sw30.png", "swirls (sw30)")]
    with pytest.raises(OutputError, match=r"\{variant\}"):
        plan(pairs, tmp_path / "out", "{content}.{ext}", "png", variants=("sw10", "sw30"))


def test_statistics_of_one_style_at_two_style_scales_are_two_entries(extractor, pair_tensors):
    """A sweep's --style-scale values share a cache: each must be computed at its own size."""
    content, style = pair_tensors
    cache = StyleCache()
    small, large = (RunConfig(size=64, iterations=(4,), style_scale=s) for s in (0.5, 1.0))
    run_iterative(content, [style], small, extractor, cache=cache)
    shared = run_iterative(content, [style], large, extractor, cache=cache).image
    alone = run_iterative(content, [style], large, extractor).image
    assert torch.equal(shared, alone)


def test_a_sweep_writes_what_single_runs_write_beside_the_photo(photo, painting, tmp_path):
    """A sweep of one photo and one painting: beside the photo without -o, each file the same
    bytes as the single run with that value (its recipe names the value), with more style at a
    higher weight; its contact sheet has a column for each value."""
    sheet = tmp_path / "sheet.png"
    result = invoke("run", photo, painting, "--style-weight", "1,300", "--style-scale", "0.5,1",
                    "--contact-sheet", sheet, *FAST)
    assert result.exit_code == 0, result.output
    made = sorted(p.name for p in tmp_path.glob("photo_x_painting_*.png"))
    assert made == ["photo_x_painting_sw1_ss0.5.png", "photo_x_painting_sw1_ss1.png",
                    "photo_x_painting_sw300_ss0.5.png", "photo_x_painting_sw300_ss1.png"]
    for name in made:
        weight, scale = name.removesuffix(".png").split("_")[-2:]
        alone = tmp_path / f"alone_{weight}_{scale}.png"
        single = invoke("run", photo, painting, "--style-weight", weight[2:], "--style-scale", scale[2:],
                        "-o", alone, *FAST)
        assert single.exit_code == 0, single.output
        assert (tmp_path / name).read_bytes() == alone.read_bytes(), name
        options = dict(Recipe.from_text(read_comment(tmp_path / name)).options)
        assert (options["--style-weight"], options["--style-scale"]) == (weight[2:], scale[2:])
    assert len({load_image(tmp_path / n).rgb.sum().item() for n in made}) == 4  # four different pictures
    results = {n: load_image(tmp_path / n).rgb for n in made}
    original = resize(load_image(photo).rgb, tuple(results[made[0]].shape[-2:]))
    change = {n: (image - original).abs().mean().item() for n, image in results.items()}
    assert change["photo_x_painting_sw300_ss1.png"] > 2 * change["photo_x_painting_sw1_ss1.png"]
    with Image.open(sheet) as img:
        assert img.width == 5 * 256  # the photo, then a column per value


def test_bad_sweeps_are_refused_before_anything_is_written(photo, painting, tmp_path):
    for args, message in [
        (["--style-weight", "10,-1"], "style weight must be zero or positive"),
        (["--style-scale", "1,0"], "--style-scale must be positive"),
        (["--style-weight", "10,x"], "--style-weight: expected comma-separated numbers"),
        (["--style-weight", "1,2", "-o", tmp_path / "one.png"], "a batch writes many images"),
        (["--style-weight", "1,2", "--name", "{content}.{ext}", "-o", tmp_path / "o"], "{variant}"),
        (["--style-weight", "1,2", "--save-every", "1"], "--save-every is for a single photo"),
        (["--name", "{variant}/{content}.{ext}", "-o", tmp_path / "o"], "{variant} is empty without several"),
    ]:
        result = invoke("run", photo, painting, *args, *FAST)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["painting.png", "photo.png"]


def test_a_sweep_of_a_folder_names_each_photos_variants_and_resumes(tmp_path, painting):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, name in enumerate(("a.png", "b.png")):
        scene(48, 40, seed).save(photos / name)
    out = tmp_path / "out"
    first = invoke("run", photos, painting, "--style-weight", "3,30", "-o", out, *FAST)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == ["a_x_painting_sw3.png", "a_x_painting_sw30.png",
                                                      "b_x_painting_sw3.png", "b_x_painting_sw30.png"]
    (out / "b_x_painting_sw30.png").unlink()
    again = invoke("run", photos, painting, "--style-weight", "3,30", "-o", out, *FAST)
    assert again.exit_code == 0 and "4 jobs: 1 to do, 3 done already" in again.output, again.output


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    weights = load_weights(BackboneConfig())
    return FeatureExtractor(weights.arch, weights.state, required_layers(LossConfig()))


@pytest.fixture
def pair_tensors(photo: Path, painting: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_image(photo).rgb, load_image(painting).rgb


def test_a_strength_sweep_of_models_writes_what_single_runs_write(photo, tmp_path):
    out = tmp_path / "out"
    result = invoke("run", photo, "-m", "starry_night", "-m", "the_scream", "--strength", "0.5,1", "--size", "48",
                    "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    made = sorted(p.name for p in out.iterdir())
    assert made == ["photo_x_starry_night_st0.5.png", "photo_x_starry_night_st1.png",
                    "photo_x_the_scream_st0.5.png", "photo_x_the_scream_st1.png"]
    for name in made:
        model, strength = name.removeprefix("photo_x_").removesuffix(".png").rsplit("_st", 1)
        alone = tmp_path / f"{model}_{strength}.png"
        single = invoke("run", photo, "-m", model, "--strength", strength, "--size", "48", "-o", alone, "--quiet")
        assert single.exit_code == 0, single.output
        assert (out / name).read_bytes() == alone.read_bytes(), name
    bad = invoke("run", photo, "-m", "starry_night", "--strength", "0.5,1.5", "-o", tmp_path / "bad")
    assert bad.exit_code == 2 and "--strength must be above 0 and at most 1" in bad.output, bad.output
    assert not (tmp_path / "bad").exists()


def test_a_sweep_of_style_weights_reads_each_style_and_computes_its_statistics_once(tmp_path, painting):
    """The variants share the VGG, the style images and their statistics (which the style weight
    does not change); another --style-scale computes its own."""
    from stylize.batchrun import run_batches
    from stylize.config import BackboneConfig, OutputConfig
    from stylize.job import Iterative

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, name in enumerate(("a.png", "b.png")):
        scene(48, 40, seed).save(photos / name)
    stylizer = Iterative(RunConfig(size=32, iterations=(1,)), BackboneConfig(), "cpu")
    computed = counted_statistics(stylizer)
    variants = sweep((3.0, 30.0), (1.0, 0.5))
    contents = [Source(photos / "a.png"), Source(photos / "b.png")]
    jobs = plan(pair(contents, [(painting,)], Pairing.product), tmp_path / "out", "{content}_{variant}.{ext}", "png",
                variants=tuple(v.label for v in variants))
    groups = [([j for j in jobs if j.variant == v.label], stylizer.varied(v)) for v in variants]
    summary = run_batches(groups, OutputConfig())
    assert [o.status.value for o in summary.outcomes] == ["done"] * 8
    assert sorted(computed) == [(16, 16, 0), (32, 32, 0)]  # once per style scale, not per variant
