"""Every output records how it was made; `stylize info IMAGE` prints it and the command that
makes the same file again."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylize.cli import app
from stylize.imageio import (EXIF_IFD_TAG, JPEG_EXIF_MAX, SOFTWARE_TAG, USER_COMMENT_TAG, read_comment, save_image)
from stylize.recipe import Input, Recipe, RecipeError, number

from conftest import scene

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def recipe_of(path: Path) -> dict:
    result = invoke("info", path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def again(path: Path, output: str) -> None:
    """Run the command `stylize info` prints for ``path``, writing ``output``."""
    result = invoke("info", path)
    assert result.exit_code == 0, result.output
    command = shlex.split(result.stdout.strip().splitlines()[-1])
    assert command[:2] == ["stylize", "run"]
    rerun = invoke(*command[1:], "-o", output, "--quiet")
    assert rerun.exit_code == 0, rerun.output


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_iterative_runs_command_makes_the_same_file_again(photo, painting, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = ["--size", "48", "--iterations", "3", "--style-weight", "7.5", "--style-layers", "relu1_1:2,relu2_1",
               "--tv-weight", "0", "--init", "random", "--seed", "3", "--preserve-color", "--save-every", "2"]
    result = invoke("run", photo.name, painting.name, "-o", "first.png", "--quiet", *options)
    assert result.exit_code == 0, result.output
    recipe = recipe_of(tmp_path / "first.png")
    assert recipe["method"] == "iterative" and recipe["made_by"].startswith("stylize ")
    assert recipe["inputs"] == [{"role": "photo", "file": "photo.png", "sha256": sha256(photo)},
                                {"role": "style", "file": "painting.png", "sha256": sha256(painting)}]
    assert {"--seed": "3", "--style-weight": "7.5", "--style-layers": "relu1_1:2,relu2_1", "--init": "random",
            "--preserve-color": None, "--scales": "1", "--iterations": "3"}.items() <= recipe["options"].items()
    assert set(recipe["loss"]) >= {"total", "content", "style"} and "stopped" not in recipe
    snapshot = recipe_of(tmp_path / "first.scale1.iter0002.png")
    assert "snapshot" in snapshot["stopped"] and snapshot["inputs"] == recipe["inputs"]
    shown = invoke("info", tmp_path / "first.scale1.iter0002.png").stdout
    assert "to make the finished image" in shown and "to make it again" not in shown
    again(tmp_path / "first.png", "again.png")
    # The same pixels and the same recipe: the same bytes.
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "first.png").read_bytes()


def test_a_model_runs_command_makes_the_same_file_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scene(60, 40).save("photo.jpg")
    mask = Image.new("L", (30, 20), 0)
    mask.paste(255, (0, 0, 30, 8))
    mask.save("sky.png")
    result = invoke("run", "photo.jpg", "--model", "starry_night", "--size", "48", "--strength", "0.6",
                    "--mask", "sky.png", "--invert-mask", "-o", "first.jpg", "--quiet")
    assert result.exit_code == 0, result.output
    recipe = recipe_of(tmp_path / "first.jpg")
    assert recipe["method"] == "model" and recipe["loss"] == {}
    assert [(i["role"], i["file"]) for i in recipe["inputs"]] == [("photo", "photo.jpg"), ("model", "starry_night"),
                                                                  ("mask", "sky.png")]
    assert {"--size": "48", "--strength": "0.6", "--invert-mask": None}.items() <= recipe["options"].items()
    again(tmp_path / "first.jpg", "again.jpg")
    assert (tmp_path / "again.jpg").read_bytes() == (tmp_path / "first.jpg").read_bytes()


def test_each_output_of_a_batch_names_its_own_photo(painting, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, name in enumerate(("a.png", "b.png")):
        scene(48, 40, seed=index).save(photos / name)
    result = invoke("run", photos, "-s", painting, "-o", tmp_path / "out", "--size", "48", "--iterations", "2",
                    "--quiet")
    assert result.exit_code == 0, result.output
    for name in ("a", "b"):
        recipe = recipe_of(tmp_path / "out" / f"{name}_x_painting.png")
        assert [i["file"] for i in recipe["inputs"]] == [f"{name}.png", "painting.png"]
        assert recipe["inputs"][0]["sha256"] == sha256(photos / f"{name}.png") and recipe["loss"]["total"] > 0
    result = invoke("run", photos, "--model", "the_scream", "-o", tmp_path / "fast", "--quiet")
    assert result.exit_code == 0, result.output
    recipe = recipe_of(tmp_path / "fast" / "b_x_the_scream.png")
    assert [i["file"] for i in recipe["inputs"]] == ["b.png", "the_scream"]


def test_no_recipe_writes_none_and_info_says_so_in_one_line(photo, tmp_path):
    out = tmp_path / "plain.png"
    assert invoke("run", photo, "--model", "starry_night", "--no-recipe", "-o", out).exit_code == 0
    assert read_comment(out) is None
    with Image.open(out) as img:
        assert SOFTWARE_TAG not in img.getexif()
    for path, fragment in ((out, "holds no recipe"), (photo, "holds no recipe"), (tmp_path / "nope.png", "no such"),
                           (tmp_path, "directory")):
        result = invoke("info", path)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_the_recipe_joins_the_photos_exif_in_every_format(tmp_path, suffix):
    camera = Image.Exif()
    camera[0x010F] = "Canon"  # Make
    camera[SOFTWARE_TAG] = "firmware 1.0"
    camera.get_ifd(EXIF_IFD_TAG)[USER_COMMENT_TAG] = b"ASCII\0\0\0a camera's comment"
    from stylize.imageio import Metadata

    text = Recipe("model", (Input("photo", "caf\u00e9 photo.jpg", "ab" * 32),), (("--size", "48"),), "cpu",
                  "2.0").to_text()
    path = tmp_path / f"out{suffix}"
    save_image(torch.rand(1, 3, 20, 30), path, metadata=Metadata(exif=camera.tobytes()), comment=text)
    assert read_comment(path) == text and Recipe.from_text(read_comment(path)).inputs[0].file == "caf\u00e9 photo.jpg"
    with Image.open(path) as img:
        exif = img.getexif()
        assert exif.get(0x010F) == "Canon" and exif.get(SOFTWARE_TAG).startswith("stylize ")


def test_a_jpeg_keeps_the_photos_exif_where_the_recipe_would_not_fit(tmp_path):
    from stylize.imageio import Metadata

    camera = Image.Exif()
    camera[0x010F] = "Canon"
    camera[0x010E] = "x" * (JPEG_EXIF_MAX - 200)  # a description that fills the segment
    path = tmp_path / "out.jpg"
    save_image(torch.rand(1, 3, 20, 30), path, metadata=Metadata(exif=camera.tobytes()), comment="{}" * 500)
    assert read_comment(path) is None
    with Image.open(path) as img:
        assert img.getexif().get(0x010F) == "Canon"


def test_recipes_read_back_exactly_and_refuse_other_text():
    recipe = Recipe("iterative", (Input("photo", "my photo.jpg", "0" * 64), Input("style", "it's.png", "1" * 64),
                                  Input("mask", "sky mask.png", "2" * 64)),
                    (("--size", "512"), ("--preserve-color", None)), "cuda:0", "2.14.1", (("total", 0.5),))
    assert Recipe.from_text(recipe.to_text()) == recipe
    assert shlex.split(recipe.command_line()) == ["stylize", "run", "my photo.jpg", "it's.png", "--mask",
                                                  "sky mask.png", "--size", "512", "--preserve-color"]
    for text in ("", "a camera's comment", "[]", json.dumps({"made_by": "other 1.0", "method": "iterative"}),
                 recipe.to_text().replace('"iterative"', '"magic"'), recipe.to_text()[:-1] + ', "moved": [1]}'):
        with pytest.raises(RecipeError):
            Recipe.from_text(text)


@pytest.mark.parametrize("value", [30.0, 0.01, 1e-5, 0.1 + 0.2, 7.5, 1 / 3])
def test_numbers_are_written_as_the_command_line_reads_them_back(value):
    assert float(number(value)) == value and not number(value).endswith(".0")


def test_layer_weights_are_written_as_they_are_read_back_exactly():
    """One formatting serves a recipe's command, the CLI's defaults and a model file's record:
    a weight such as 1/3 must come back the same, not rounded to six digits."""
    from stylize.config import format_layer_weights, parse_layer_weights

    weights = (("relu1_1", 1.0), ("relu2_1", 1 / 3), ("relu3_1", 2.5e-05))
    text = format_layer_weights(weights)
    assert text.startswith("relu1_1,relu2_1:0.333333333")
    assert parse_layer_weights(text, "--style-layers") == weights
