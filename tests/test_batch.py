"""Batches: planning (pure path work) and whole batches through the command line."""

from __future__ import annotations

import json

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylize.batch import PlannedJob, expand, natural_key, output_folder, pair, plan
from stylize.cli import app
from stylize.config import Pairing
from stylize.errors import InputError, OutputError
from stylize.imageio import load_image
from stylize.job import Fast
from stylize.modelfile import save_model
from stylize.sheet import grid
from stylize.transformer import TransformerConfig, TransformerNet

from conftest import counted_statistics, scene, sigint_default, stripes

runner = CliRunner()
FAST = ["--size", "40", "--iterations", "2", "--quiet"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two good photos, one in a sub-folder, a corrupt file, a tiny image and a text file."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    scene(48, 40, seed=1).save(photos / "img2.jpg")
    scene(48, 40, seed=2).save(photos / "img10.png")
    scene(40, 48, seed=3).save(photos / "sub" / "deep.jpg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    scene(8, 8).save(photos / "tiny.png")
    (photos / "notes.txt").write_text("not an image")
    (photos / ".hidden.png").write_bytes(b"")
    return photos


@pytest.fixture
def styles(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "s1.png", tmp_path / "s2.png"]
    stripes(40, 40).save(paths[0])
    scene(40, 40, seed=9).save(paths[1])
    return paths


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_model(path, TransformerNet(TransformerConfig(width=4, blocks=1)), {"style_name": "s1.png"})
    return path


# ------------------------------------------------------------------------------------ planning

def test_folders_patterns_and_natural_order(folder):
    names = [s.path.name for s in expand([folder], recursive=False, what="content")]
    assert names == ["broken.jpg", "img2.jpg", "img10.png", "tiny.png"]  # no .txt, no hidden file
    deep = expand([folder], recursive=True, what="content")
    assert [(s.path.name, s.subdir) for s in deep if s.subdir] == [("deep.jpg", "sub")]
    pattern = expand([str(folder / "**" / "*.jpg")], recursive=False, what="content")
    assert sorted(s.path.name for s in pattern) == ["broken.jpg", "deep.jpg", "img2.jpg"]
    assert not any(s.explicit for s in pattern)
    assert sorted(["a10", "a9", "a1"], key=lambda n: natural_key(Path(n))) == ["a1", "a9", "a10"]
    phone = folder.parent / "phone"
    phone.mkdir()
    for name in ("IMG_0001.HEIC", "IMG_0002.heif", "IMG_0003.avif", "IMG_0004.mov", "IMG_0004.AAE"):
        (phone / name).write_bytes(b"x")
    assert [s.path.name for s in expand([phone], False, "content")] == ["IMG_0001.HEIC", "IMG_0002.heif",
                                                                        "IMG_0003.avif"]  # a phone's photos


def test_nothing_to_expand_is_a_clear_error(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no content images"):
        expand([tmp_path / "empty"], False, "content")
    with pytest.raises(InputError, match="no style images match"):
        expand([str(tmp_path / "*.gif")], False, "style")
    with pytest.raises(InputError, match="add --recursive"):
        expand([folder.parent], False, "content")  # only sub-folders hold images


def test_product_and_zip_pairing(folder, styles):
    contents = expand([folder / "img2.jpg", folder / "img10.png"], False, "content")
    groups = [(s,) for s in styles]
    assert len(pair(contents, groups, Pairing.product)) == 4
    zipped = pair(contents, groups, Pairing.zip)
    assert [(c.path.name, g[0].name) for c, g in zipped] == [("img2.jpg", "s1.png"), ("img10.png", "s2.png")]
    with pytest.raises(InputError, match="as many styles as contents"):
        pair(contents, groups[:1], Pairing.zip)


def test_template_fields_escapes_and_collisions(folder, styles, tmp_path):
    out = tmp_path / "out"
    contents = expand([folder], True, "content")
    jobs = plan(pair(contents, [(styles[0],)], Pairing.product), out, "{dir}/{style}-{content}.{ext}", "webp")
    assert out / "sub" / "s1-deep.webp" in [j.output for j in jobs]
    assert out / "s1-img2.webp" in [j.output for j in jobs]
    for bad in ("../{content}.png", "/tmp/{content}.png", "{content}/../../x.png"):
        with pytest.raises(OutputError, match="not inside the output folder"):
            plan(pair(contents, [(styles[0],)], Pairing.product), out, bad, "png")
    with pytest.raises(InputError, match=r"unknown field \{photo\}"):
        plan(pair(contents, [(styles[0],)], Pairing.product), out, "{photo}.png", "png")
    with pytest.raises(OutputError, match=r"would both write .*put \{content\}, \{style\}, \{variant\} or \{dir\}"):
        plan(pair(contents, [(styles[0],)], Pairing.product), out, "{style}.{ext}", "png")
    with pytest.raises(OutputError, match="no image suffix"):
        plan(pair(contents, [(styles[0],)], Pairing.product), out, "{content}", "png")


def test_photos_of_one_name_in_two_folders_get_a_message_that_helps(styles, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        scene(16, 16).save(tmp_path / name / "x.png")
    contents = expand([tmp_path / "a", tmp_path / "b"], False, "content")
    for template in ("{content}_x_{style}.{ext}", "{dir}/{content}_x_{style}.{ext}"):
        # {dir} is the same ("" at the top) for both, so suggesting it would not help.
        with pytest.raises(OutputError, match="would both write .*own -o folder, or rename"):
            plan(pair(contents, [(styles[0],)], Pairing.product), tmp_path / "out", template, "png")


def test_an_input_is_never_written_over_even_with_overwrite(tmp_path, model):
    photos = tmp_path / "photos"
    photos.mkdir()
    scene(40, 32, seed=1).save(photos / "x.jpg")
    scene(40, 32, seed=2).save(photos / "x_x_tiny.jpg")  # the first photo's default output name, as a jpg
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for args in (["--name", "{content}.{ext}"], []):  # over itself; over the other photo
        result = invoke("run", photos / "x.jpg", photos / "x_x_tiny.jpg", "--model", model, "-o", photos,
                        "--format", "jpg", "--overwrite", *args)
        assert result.exit_code == 2 and "is an input of this run and is never written over" in result.stderr
    single = invoke("run", photos / "x.jpg", "--model", model, "-o", photos / "x.jpg", "--overwrite")
    assert single.exit_code == 2 and "never written over" in single.stderr
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_output_option_rules(tmp_path):
    assert output_folder(None, batch=False) == (None, None)
    assert output_folder(tmp_path / "x.jpg", batch=False) == (None, tmp_path / "x.jpg")
    assert output_folder(tmp_path / "results", batch=True) == (tmp_path / "results", None)
    with pytest.raises(OutputError, match="give an output folder"):
        output_folder(None, batch=True)
    with pytest.raises(OutputError, match="give a folder"):
        output_folder(tmp_path / "x.jpg", batch=True)


# --------------------------------------------------------------------------- iterative batches

def test_batch_reports_failures_continues_and_resumes(folder, styles, tmp_path):
    out = tmp_path / "out"
    result = invoke("run", folder, "-s", styles[0], "-o", out, *FAST)
    assert result.exit_code == 1, result.output  # something failed, the rest is done
    assert sorted(p.name for p in out.iterdir()) == ["img10_x_s1.png", "img2_x_s1.png"]
    assert "broken.jpg" in result.stdout and "not an image" in result.stdout
    assert "tiny.png" in result.stdout and "too small" in result.stdout
    assert "Traceback" not in result.output
    done = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = invoke("run", folder, "-s", styles[0], "-o", out, *FAST)
    assert again.exit_code == 1 and "2 done already" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == done  # nothing redone
    redo = invoke("run", folder / "img2.jpg", folder / "img10.png", "-s", styles[0], "-o", out, "--overwrite", *FAST)
    assert redo.exit_code == 0, redo.output
    assert all(p.stat().st_mtime_ns != done[p] for p in out.iterdir())


def test_results_inside_the_input_folder_are_not_new_inputs(folder, styles):
    out = folder / "styled"
    first = invoke("run", folder / "img2.jpg", folder / "img10.png", "-s", styles[0], "-o", out, *FAST)
    assert first.exit_code == 0, first.output
    again = invoke("run", folder, "-r", "-s", styles[0], "-o", out, "--dry-run")
    assert again.exit_code == 0 and "_x_s1_x_s1" not in again.stdout and "skip (exists)" in again.stdout


def test_product_of_contents_and_styles_with_name_and_format(folder, styles, tmp_path):
    out = tmp_path / "out"
    result = invoke("run", folder / "img2.jpg", folder / "img10.png", "-s", styles[0], "-s", styles[1], "-o", out,
                    "--name", "{style}/{content}.{ext}", "--format", "jpg", "--quality", "60", *FAST)
    assert result.exit_code == 0, result.output
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    assert made == ["s1/img10.jpg", "s1/img2.jpg", "s2/img10.jpg", "s2/img2.jpg"]
    with Image.open(out / "s1" / "img2.jpg") as img:
        assert img.format == "JPEG" and img.size == (40, 33)


def test_file_names_that_look_like_markup_are_shown_as_they_are(styles, tmp_path, monkeypatch):
    from rich.console import Console

    from stylize.cli import display

    photos = tmp_path / "photos"
    photos.mkdir()
    scene(40, 32).save(photos / "[red]p.png")
    dry = invoke("run", photos, "-s", styles[0], "-o", tmp_path / "out", "--dry-run")
    assert dry.exit_code == 0 and "[red]p_x_s1.png" in dry.stdout, dry.output
    monkeypatch.setattr(display, "err_console", Console(stderr=True, force_terminal=True, width=200))  # the bars
    result = invoke("run", photos, "-s", styles[0], "-o", tmp_path / "out", "--size", "32", "--iterations", "2")
    assert result.exit_code == 0 and "done: [red]p.png x s1" in re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", result.stderr)


@pytest.mark.parametrize("option", [["--save-every", "1"], ["--init-image", "PHOTO"]])
def test_single_photo_options_are_refused_for_a_batch(folder, styles, tmp_path, option):
    option = [str(folder / "img2.jpg") if o == "PHOTO" else o for o in option]  # --save-every was ignored
    result = invoke("run", folder / "img2.jpg", folder / "img10.png", "-s", styles[0], "-o", tmp_path / "out",
                    *option, *FAST)
    assert result.exit_code == 2 and f"{option[0]} is for a single photo, not a batch" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_options_of_the_other_method_are_refused_not_ignored(folder, styles, tmp_path, model):
    photo, out = folder / "img2.jpg", tmp_path / "o.png"
    result = invoke("run", photo, "--model", model, "-o", out, "--style-weight", "100", "--seed", "3",
                    "--pooling", "average", "--match-color")
    assert result.exit_code == 2
    assert "--style-weight, --seed, --pooling, --match-color: not used with --model" in result.stderr
    result = invoke("run", photo, styles[0], "-o", out, "--batch-size", "2", *FAST)
    assert result.exit_code == 2 and "--batch-size: used with --model only" in result.stderr
    assert not out.exists()
    # Options both methods read are fine with either.
    assert invoke("run", photo, "--model", model, "-o", out, "--size", "32", "--preserve-color").exit_code == 0


def test_strength_blends_the_result_over_the_photo(folder, tmp_path, model):
    import numpy as np

    photo = folder / "img10.png"  # lossless: the blend is checked to a grey level
    assert invoke("run", photo, "--model", model, "-o", tmp_path / "full.png").exit_code == 0
    half = invoke("run", photo, "--model", model, "-o", tmp_path / "half.png", "--strength", "0.5")
    assert half.exit_code == 0, half.output
    pixels = {name: np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"), dtype=np.float64)
              for name in ("full", "half")}
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float64)
    assert np.abs(pixels["full"] - original).mean() > 20  # a real difference to halve
    assert np.abs(pixels["half"] - (pixels["full"] + original) / 2).max() <= 1.0
    # A batch (several photos in one pass) blends each with its own photo.
    out = tmp_path / "out"
    assert invoke("run", photo, folder / "img2.jpg", "--model", model, "-o", out, "--strength", "0.5",
                  "--quiet").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(out / "img10_x_tiny.png").convert("RGB")), pixels["half"])
    for bad in ("0", "1.5", "nan", "-1"):
        result = invoke("run", photo, "--model", model, "-o", tmp_path / "x.png", "--strength", bad)
        assert result.exit_code == 2 and "--strength must be above 0 and at most 1" in result.stderr, result.output
    iterative = invoke("run", photo, folder / "img2.jpg", "-o", tmp_path / "x.png", "--strength", "0.5", *FAST)
    assert iterative.exit_code == 2 and "lower --style-weight" in iterative.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_mask_keeps_the_photo_where_it_is_black(folder, styles, tmp_path, model):
    import numpy as np

    photo = folder / "img10.png"  # 48x40, lossless
    mask = Image.new("L", (24, 20), 255)  # half the photo's size: any size of its proportions
    mask.paste(0, (12, 0, 24, 20))  # the right half black
    mask.save(tmp_path / "mask.png")
    rgb = lambda path: np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)  # noqa: E731
    original = rgb(photo)
    assert invoke("run", photo, "--model", model, "-o", tmp_path / "full.png").exit_code == 0
    for args in (["--model", model], [styles[0], "--size", "48", "--scales", "1", "--iterations", "3"]):
        out = tmp_path / f"masked{len(args)}.png"
        result = invoke("run", photo, *args, "-o", out, "--mask", tmp_path / "mask.png", "--quiet")
        assert result.exit_code == 0, result.output
        masked = rgb(out)
        # Away from the edge (where the resized mask is grey): the photo on the right, the style on the left.
        assert np.abs(masked[:, 28:] - original[:, 28:]).max() <= 1.0
        assert np.abs(masked[:, :20] - original[:, :20]).mean() > 3
    assert np.abs(rgb(tmp_path / "masked2.png")[:, :20] - rgb(tmp_path / "full.png")[:, :20]).max() <= 1.0
    inverted = invoke("run", photo, "--model", model, "-o", tmp_path / "inverted.png", "--mask", tmp_path / "mask.png",
                      "--invert-mask")
    assert inverted.exit_code == 0, inverted.output
    assert np.abs(rgb(tmp_path / "inverted.png")[:, :20] - original[:, :20]).max() <= 1.0  # the photo on the left
    assert np.abs(rgb(tmp_path / "inverted.png")[:, 28:] - rgb(tmp_path / "full.png")[:, 28:]).max() <= 1.0
    alone = invoke("run", photo, "--model", model, "-o", tmp_path / "x.png", "--invert-mask")
    assert alone.exit_code == 2 and "--invert-mask inverts a --mask; give one" in alone.stderr
    Image.new("L", (40, 40), 255).save(tmp_path / "square.png")
    wrong = invoke("run", photo, "--model", model, "-o", tmp_path / "x.png", "--mask", tmp_path / "square.png")
    assert wrong.exit_code == 2 and "a 40x40 mask for a 48x40 photo; draw the mask at the photo's proportions" \
        in wrong.stderr, wrong.output
    assert not (tmp_path / "x.png").exists()
    over = invoke("run", photo, "--model", model, "-o", tmp_path / "mask.png", "--mask", tmp_path / "mask.png",
                  "--overwrite")
    assert over.exit_code == 2 and "is the --mask of this run and is never written over" in over.stderr
    assert Image.open(tmp_path / "mask.png").size == (24, 20)


def test_zip_pairs_and_dry_run_writes_nothing(folder, styles, tmp_path):
    out = tmp_path / "out"
    args = ["run", folder / "img2.jpg", folder / "img10.png", "-s", styles[0], "-s", styles[1], "-o", out,
            "--pairs", "zip"]
    dry = invoke(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "img2_x_s1.png" in dry.stdout and "img10_x_s2.png" in dry.stdout and "img2_x_s2" not in dry.stdout
    assert not out.exists()
    assert invoke(*args, *FAST).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["img10_x_s2.png", "img2_x_s1.png"]


def test_batch_needs_an_output_folder_and_a_safe_template(folder, styles, tmp_path):
    result = invoke("run", folder, "-s", styles[0], *FAST)
    assert result.exit_code == 2 and "-o DIR" in result.stderr
    escape = invoke("run", folder, "-s", styles[0], "-o", tmp_path / "out", "--name", "../{content}.png", *FAST)
    assert escape.exit_code == 2 and "not inside the output folder" in escape.stderr
    clash = invoke("run", folder, "-s", styles[0], "-o", tmp_path / "out", "--name", "same.png", *FAST)
    assert clash.exit_code == 2 and "would both write" in clash.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_style_statistics_are_computed_once_per_batch(folder, styles):
    from stylize.batch import plan as make_plan
    from stylize.batchrun import run_batch
    from stylize.config import BackboneConfig, OutputConfig, RunConfig
    from stylize.job import Iterative

    stylizer = Iterative(RunConfig(size=32, iterations=(1,)), BackboneConfig(), "cpu")
    computed = counted_statistics(stylizer)
    contents = expand([folder / "img2.jpg", folder / "img10.png"], False, "content")
    jobs = make_plan(pair(contents, [(styles[0],)], Pairing.product), folder.parent / "o", "{content}.{ext}", "png")
    summary = run_batch(jobs, stylizer, OutputConfig())
    assert [o.status.value for o in summary.outcomes] == ["done", "done"]
    assert computed == [(32, 32, 0)]  # one scale, one style, two photos of one size: computed once


def test_contact_sheet_shows_inputs_and_results(folder, styles, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = invoke("run", folder / "img2.jpg", folder / "broken.jpg", "-s", styles[0], "-s", styles[1],
                    "-o", tmp_path / "out", "--contact-sheet", sheet, *FAST)
    assert result.exit_code == 1, result.output
    with Image.open(sheet) as img:
        # Rows: the styles (square: 256 px), img2 (48x40: 256x213), broken.jpg (nothing to
        # show: 256); each under a 14 px label strip.
        assert img.size == (3 * 256, (14 + 256) + (14 + 213) + (14 + 256))
        grey = img.getpixel((256 + 128, 270 + 227 + 14 + 128))  # broken.jpg x s1 failed: a grey cell
        assert grey == (200, 200, 200)
        result_cell = img.crop((256, 270 + 14, 512, 270 + 14 + 213))
        assert len(result_cell.getcolors(maxcolors=100_000)) > 50  # a real picture
        photo_cell = img.crop((0, 270 + 14, 256, 270 + 14 + 213))
        for y in (0, 212):  # the photo fills its row: no white band above or below it
            assert photo_cell.crop((0, y, 256, y + 1)).getcolors() != [(256, (255, 255, 255))]


def test_contact_sheet_of_a_model_run_has_no_blank_header(tmp_path):
    from stylize.sheet import contact_sheet

    photo = tmp_path / "p.png"
    Image.new("RGB", (200, 100), (255, 0, 0)).save(photo)
    result = tmp_path / "r.png"
    Image.new("RGB", (200, 100), (0, 0, 255)).save(result)
    sheet = contact_sheet([photo], [("starry", None)], {(photo, "starry"): result})
    assert sheet.size == (2 * 256, 14 + 128)  # one row: the photo and its result, no empty painting row above
    assert sheet.getpixel((128, 14 + 64)) == (255, 0, 0) and sheet.getpixel((256 + 128, 14 + 64)) == (0, 0, 255)
    painting = tmp_path / "s.png"
    Image.new("RGB", (100, 100), (0, 255, 0)).save(painting)
    sheet = contact_sheet([photo], [("s", painting)], {(photo, "s"): result})
    assert sheet.size == (2 * 256, (14 + 256) + (14 + 128)) and sheet.getpixel((256 + 128, 14 + 128)) == (0, 255, 0)


def test_sheet_rows_are_as_tall_as_their_tallest_picture():
    wide, tall = Image.new("RGB", (300, 100), (255, 0, 0)), Image.new("RGB", (100, 200), (0, 0, 255))
    sheet = grid([("a", wide, True), ("b", wide, True), ("c", tall, True), ("", None, True)], columns=2, side=150)
    assert sheet.size == (300, (14 + 50) + (14 + 150))
    assert sheet.getpixel((75, 14)) == sheet.getpixel((75, 14 + 49)) == (255, 0, 0)  # the row is the picture
    assert sheet.getpixel((75, 64 + 14 + 75)) == (0, 0, 255)
    assert sheet.getpixel((225, 64 + 14 + 75)) == (200, 200, 200)  # a placeholder fills its row


def test_ctrl_c_in_a_batch_leaves_only_finished_files(folder, styles, tmp_path):
    """A real SIGINT while the second photo is in flight: one output, no partial file, exit 130;
    running the same command again does the rest."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-u", "-m", "stylize", "run", str(folder / "img2.jpg"), str(folder / "img10.png"),
           "-s", str(styles[0]), "-o", str(out), "--size", "40", "--scales", "1", "--quiet"]
    proc = subprocess.Popen([*cmd, "--iterations", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=sigint_default)
    assert "2 to do" in proc.stdout.readline()  # the batch has started
    time.sleep(3)  # well into the first photo's (endless) optimisation
    proc.send_signal(signal.SIGINT)
    output, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []  # the unfinished image was discarded
    done = subprocess.run([*cmd, "--iterations", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["img10_x_s1.png", "img2_x_s1.png"]


def test_iterative_run_too_large_for_memory_is_refused(folder, styles, tmp_path):
    out = tmp_path / "o.png"
    result = invoke("run", folder / "img2.jpg", styles[0], "-o", out, "--size", "200000", "--quiet")
    assert result.exit_code == 2, result.output
    assert "needs about" in result.stderr and "use --size" in result.stderr
    assert not out.exists()


def test_a_style_scale_whose_style_pass_would_not_fit_is_refused(folder, styles, tmp_path):
    # The run itself is small; the style image, at 1000x the output's size, is not (it ran out of memory).
    out = tmp_path / "o.png"
    result = invoke("run", folder / "img2.jpg", styles[0], "-o", out, "--size", "64", "--style-scale", "1000",
                    "--quiet")
    assert result.exit_code == 2, result.output
    assert "--style-scale 1000 makes it 64000x" in result.stderr and "lower --style-scale" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------------------ model batches

def test_model_batches_same_size_photos_and_matches_one_by_one(tmp_path, model):
    photos = tmp_path / "same"
    photos.mkdir()
    for i in range(4):
        scene(40, 32, seed=i).save(photos / f"p{i}.png")
    scene(24, 36, seed=7).save(photos / "odd.png")
    one, four = tmp_path / "one", tmp_path / "four"
    assert invoke("run", photos, "--model", model, "-o", one, "--device", "cpu").exit_code == 0
    result = invoke("run", photos, "--model", model, "-o", four, "--batch-size", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in four.iterdir()) and len(names) == 5
    for name in names:
        a, b = load_image(one / name).rgb, load_image(four / name).rgb
        assert (a - b).abs().max() * 255 <= 1.01  # batched convolutions may round differently by one level


def test_an_allocation_that_fails_costs_one_job_or_one_line(tmp_path, model, monkeypatch):
    """torch's CPU allocator fails with a plain RuntimeError (seen with --size 60000): a batch marks
    that photo failed and goes on; a single run says so in one line, with no traceback."""
    import stylize.job

    photos = tmp_path / "photos"
    photos.mkdir()
    scene(40, 32).save(photos / "small.png")
    scene(60, 48).save(photos / "large.png")
    real = stylize.job.Fast._stylize

    def allocating(fast, image):
        if image.shape[-1] == 60:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 28735920000 bytes. Error code 12")
        return real(fast, image)

    monkeypatch.setattr(stylize.job.Fast, "_stylize", allocating)
    result = invoke("run", photos, "--model", model, "-o", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 1 and "large.png x tiny: out of memory" in result.output, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["small_x_tiny.png"]
    single = invoke("run", photos / "large.png", "--model", model, "-o", tmp_path / "one.png", "--device", "cpu")
    assert single.exit_code == 2 and single.stderr.strip() == ("error: out of memory: try a smaller --size (with a "
                                                               "trained --model, --tile 512)"), single.output
    assert not (tmp_path / "one.png").exists()


def test_a_size_beyond_max_pixels_or_memory_is_refused_before_any_work(tmp_path, model):
    photo = tmp_path / "p.png"
    scene(40, 30).save(photo)
    # Sizes chosen so that a regression fails fast: a small image, or an allocation far beyond any machine.
    result = invoke("run", photo, "--model", model, "-o", tmp_path / "big.png", "--size", "400", "--max-pixels",
                    "10000")
    assert result.exit_code == 2 and "--size 400 makes 400x300, 120,000 pixels, more than --max-pixels 10,000" \
        in result.stderr, result.output
    result = invoke("run", photo, "--model", model, "-o", tmp_path / "big.png", "--size", "400000", "--max-pixels",
                    str(10**12))
    assert result.exit_code == 2 and "for the images alone" in result.stderr and "lower --size" in result.stderr
    assert not (tmp_path / "big.png").exists()


def test_a_large_jpeg_at_a_smaller_size_is_decoded_smaller_and_sized_from_the_whole(tmp_path, model):
    """--size 150 from an 803x601 JPEG: decoded at 1/4 (201x151), whose rounding would make the
    output 150x113; sized from the whole picture it is 150x112, as when decoded whole."""
    photo = tmp_path / "in" / "big.jpg"
    photo.parent.mkdir()
    scene(803, 601).save(photo, quality=95)
    loaded = Fast(model, "cpu", size=150).load(photo)
    assert loaded.size == (151, 201) and loaded.full_size == (601, 803)
    single = invoke("run", photo, "--model", model, "-o", tmp_path / "one.png", "--size", "150", "--quiet")
    assert single.exit_code == 0, single.output
    folder = invoke("run", photo.parent, "--model", model, "-o", tmp_path / "out", "--size", "150", "--quiet",
                    "--name", "{content}.png")  # a folder: the batch's reader threads
    assert folder.exit_code == 0, folder.output
    whole = Fast(model, "cpu", size=150)
    expected = whole.run([whole.input(load_image(photo))])[0]
    for out in (tmp_path / "one.png", tmp_path / "out" / "big.png"):
        result = load_image(out).rgb
        assert result.shape[-2:] == (112, 150)
        assert (result - expected).abs().mean() < 0.03  # the same picture as from the whole decode


def test_model_batch_groups_by_size(tmp_path, model):
    from stylize.batchrun import run_batch
    from stylize.config import OutputConfig

    photos = tmp_path / "mixed"
    photos.mkdir()
    for i, size in enumerate([(40, 32), (24, 36), (40, 32), (24, 36), (40, 32)]):
        scene(*size, seed=i).save(photos / f"p{i}.png")
    stylizer = Fast(model, "cpu")
    passes = []
    stylizer.network.register_forward_hook(lambda m, i, o: passes.append(o.shape[0]))
    contents = expand([photos], False, "content")
    jobs = plan(pair(contents, [()], Pairing.product), tmp_path / "out", "{content}.{ext}", "png", "tiny")
    summary = run_batch(jobs, stylizer, OutputConfig(batch_size=2))
    assert [o.status.value for o in summary.outcomes] == ["done"] * 5
    assert sorted(passes) == [1, 2, 2]  # two pairs of same-size photos, then the one left over


def test_a_bug_while_loading_stops_a_model_batch_instead_of_hanging(tmp_path, model, monkeypatch):
    """Only core errors and failed allocations fail one job; anything else is a bug and stops the
    batch. Raised in the photo loader's thread, such an error used to end that thread without a
    word, and the batch waited for its next photo forever."""
    import threading

    import stylize.job
    from stylize.batchrun import run_batch
    from stylize.config import OutputConfig

    photos = tmp_path / "photos"
    photos.mkdir()
    scene(40, 32).save(photos / "p.png")
    jobs = _model_jobs(photos, tmp_path / "out", "tiny")
    stylizer = Fast(model, "cpu")

    def broken(path, max_pixels, **decode):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(stylize.job, "load_image", broken)  # Fast.load, which the reader threads call
    raised: list[BaseException] = []

    def batch() -> None:
        try:
            run_batch(jobs, stylizer, OutputConfig())
        except ZeroDivisionError as exc:
            raised.append(exc)

    thread = threading.Thread(target=batch, daemon=True)  # a daemon: a hang must not hold up pytest's exit
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and [str(e) for e in raised] == ["a bug"]


@pytest.mark.parametrize("threads", [2, 0])
def test_results_are_written_in_the_background_and_a_failed_write_fails_its_photo_only(tmp_path, model,
                                                                                      monkeypatch, threads):
    """A batch through a trained network reads its photos in reader threads, in order, and hands its
    results to writer threads (with none, its own thread writes them): every output is written
    whole, a photo that cannot be read or written is failed with the reason and the rest go on;
    a write that fails with a bug stops the batch."""
    import threading

    import stylize.batchrun
    import stylize.imageio
    from stylize.batchrun import Status, run_batch
    from stylize.config import OutputConfig

    photos = _scenes(tmp_path / "photos", 5)
    (photos / "p5.png").write_bytes(b"not a png")  # read in a reader thread, failed in its turn
    writers, real = [], stylize.batchrun.save_result

    def save(image, content, path, *args):
        writers.append(threading.current_thread())
        if path.name.startswith("p3"):
            raise OutputError(f"{path}: disk full")
        real(image, content, path, *args)

    monkeypatch.setattr(stylize.batchrun, "io_threads", lambda: threads)
    monkeypatch.setattr(stylize.batchrun, "save_result", save)
    stylizer = Fast(model, "cpu")
    jobs = _model_jobs(photos, tmp_path / "out", "m")
    events = []
    summary = run_batch(jobs, stylizer, OutputConfig(batch_size=2),
                        on_job=lambda event: events.append((threading.current_thread(), event)))
    assert summary.count(Status.done) == 4 and len(summary.failed) == 2
    assert summary.failed[0].reason == f"{tmp_path}/out/p3.png: disk full"
    assert summary.failed[1].job.content.path.name == "p5.png"
    starts = [event.index for _, event in events if event.outcome is None]
    assert starts == list(range(6))  # photos handed over in order, however many threads read them
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png", "p2.png", "p4.png"]
    assert all(load_image(tmp_path / "out" / f"p{i}.png").size == (32, 40) for i in (0, 1, 2, 4))
    assert all((w is threading.main_thread()) == (threads == 0) for w in writers) and len(writers) == 5
    ends = [thread for thread, event in events if event.outcome is not None]
    assert len(ends) == 6 and all(t is threading.main_thread() for t in ends)  # reported by the batch's thread

    def broken(*args):
        raise ValueError("a bug")

    monkeypatch.setattr(stylize.batchrun, "save_result", broken)
    with pytest.raises(ValueError, match="a bug"):
        run_batch(jobs, stylizer, OutputConfig(batch_size=2, overwrite=True))


def test_ctrl_c_in_a_fast_batch_writes_what_was_computed_and_stops(tmp_path, model, monkeypatch):
    """Ctrl-C during a pass: the results already computed are written whole and counted done (the
    writer finishes them), the photos in flight have no output, and the batch reports itself
    interrupted."""
    from stylize.batchrun import Status, run_batch
    from stylize.config import OutputConfig

    photos = _scenes(tmp_path / "photos", 6)
    stylizer = Fast(model, "cpu")
    real, calls = stylizer.run, []

    def run(images):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(images)

    monkeypatch.setattr(stylizer, "run", run)
    jobs = _model_jobs(photos, tmp_path / "out", "m")
    summary = run_batch(jobs, stylizer, OutputConfig(batch_size=2))
    assert summary.interrupted and summary.count(Status.done) == 4 and not summary.failed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png", "p2.png", "p3.png"]
    assert all(load_image(tmp_path / "out" / f"p{i}.png").size == (32, 40) for i in range(4))


def _scenes(folder: Path, count: int) -> Path:
    """A folder of ``count`` generated photos of one size, p0.png ..."""
    folder.mkdir()
    for i in range(count):
        scene(40, 32, seed=i).save(folder / f"p{i}.png")
    return folder


def _model_jobs(photos: Path, out: Path, model_name: str) -> list[PlannedJob]:
    """The jobs of `stylize run PHOTOS --model MODEL -o OUT --name {content}.{ext}`."""
    return plan(pair(expand([photos], False, "content"), [()], Pairing.product), out, "{content}.{ext}", "png",
                model_name)


def test_a_full_disk_stops_a_model_batch_and_a_rerun_resumes_it(tmp_path, model, monkeypatch):
    """The disk fills while results are written: the photos whose writes failed are failed, the
    batch stops there instead of stylising photos it cannot write, and running it again after
    space is freed does the rest."""
    import errno

    import stylize.batchrun
    from stylize.atomic import atomic_write
    from stylize.batchrun import Status, run_batch
    from stylize.config import OutputConfig

    def full(handle) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    real = stylize.batchrun.save_result

    def save(image, content, path, *args):
        if path.name >= "p2":  # the disk fills after two results
            atomic_write(path, full)
        real(image, content, path, *args)

    photos = _scenes(tmp_path / "photos", 8)
    stylizer = Fast(model, "cpu")
    real_run, passes = stylizer.run, []
    monkeypatch.setattr(stylizer, "run", lambda images: passes.append(len(images)) or real_run(images))
    monkeypatch.setattr(stylize.batchrun, "io_threads", lambda: 0)  # writes in turn: where it stops is fixed
    monkeypatch.setattr(stylize.batchrun, "save_result", save)
    jobs = _model_jobs(photos, tmp_path / "out", "m")
    summary = run_batch(jobs, stylizer, OutputConfig(batch_size=2))
    assert summary.count(Status.done) == 2 and [o.job.output.name for o in summary.failed] == ["p2.png", "p3.png"]
    assert "no space left" in summary.stopped and passes == [2, 2]  # p4-p7 never stylised
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]

    monkeypatch.setattr(stylize.batchrun, "save_result", real)
    again = run_batch(_model_jobs(photos, tmp_path / "out", "m"), stylizer, OutputConfig(batch_size=2))
    assert again.count(Status.skipped) == 2 and again.count(Status.done) == 6 and not again.stopped


def test_too_little_room_for_a_result_is_found_before_the_work(folder, styles, tmp_path, model, monkeypatch):
    """Where the disk has less room than a result may need, a single run is refused in one line
    before any work, and a batch stops at its first job without optimising it."""
    import shutil

    import stylize.job

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=50_000))
    runs = []
    monkeypatch.setattr(stylize.job.Iterative, "run", lambda *args, **kwargs: runs.append(1))
    out = tmp_path / "out"
    batch = invoke("run", folder / "img2.jpg", folder / "img10.png", "-s", styles[0], "-o", out, *FAST)
    assert batch.exit_code == 1 and runs == [] and "not started │ 1" in batch.stdout, batch.output
    assert "50 kB free on its disk" in batch.stdout and "stopped: no room left" in batch.stderr
    for args in ([folder / "img2.jpg", styles[0], *FAST], [folder / "img2.jpg", "--model", model]):
        single = invoke("run", *args, "-o", out / "one.png")
        assert single.exit_code == 2 and single.stderr.count("\n") == 1, single.output
        assert "50 kB free on its disk, and the output needs up to" in single.stderr
    assert runs == [] and list(out.iterdir()) == []


def test_the_room_asked_for_counts_the_snapshots_too(photo, painting, tmp_path, monkeypatch):
    """--save-every's snapshots are written beside the result: the room checked up front is theirs too."""
    import shutil

    from stylize.config import BackboneConfig, RunConfig
    from stylize.errors import DiskFullError
    from stylize.imageio import output_bytes
    from stylize.job import prepare

    config = RunConfig(size=40, scales=1, iterations=(6,), save_every=2)
    job = prepare(photo, [painting], tmp_path / "o.png", config, BackboneConfig(), "cpu", False)
    result = output_bytes(job.content, job.schedule[-1][0])
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=4 * result))
    prepare(photo, [painting], tmp_path / "o.png", config, BackboneConfig(), "cpu", False)  # 1 + 3 files
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=4 * result - 1))
    with pytest.raises(DiskFullError, match="free some space"):
        prepare(photo, [painting], tmp_path / "o.png", config, BackboneConfig(), "cpu", False)


def test_several_models_make_a_batch_of_every_photo_with_every_model(tmp_path, model, monkeypatch):
    """-m repeated: every photo with every model, one file each, named by model; every model is
    loaded before any photo is stylised; one summary and contact sheet; a rerun resumes; two
    models of one name (which would write the same files) are refused."""
    import stylize.job

    photos = _scenes(tmp_path / "photos", 2)
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_model(other, TransformerNet(TransformerConfig(width=4, blocks=1)), {"style_name": "s2.png"})
    out = tmp_path / "out"
    args = ["run", photos, "-m", model, "-m", other, "-m", "starry_night", "-o", out, "--device", "cpu"]
    result = invoke(*args, "--contact-sheet", tmp_path / "sheet.png")
    assert result.exit_code == 0 and "6 jobs: 6 to do" in result.stdout, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"p{i}_x_{m}.png" for i in range(2) for m in ("other", "starry_night", "tiny")]
    for i in range(2):  # each file is its own model's output for that photo
        for name, spec in (("tiny", model), ("other", other), ("starry_night", "starry_night")):
            fast = Fast(spec, "cpu")
            expected = fast.run([fast.input(load_image(photos / f"p{i}.png"))])[0]
            assert (load_image(out / f"p{i}_x_{name}.png").rgb - expected).abs().max() <= 0.5 / 255 + 1e-6
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size[0] > sheet.size[1]  # a column per model, beside the photos
    assert "6 done already" in invoke(*args).stdout
    zipped = invoke("run", photos, "-m", model, "-m", other, "--pairs", "zip", "-o", tmp_path / "zip")
    assert zipped.exit_code == 0, zipped.output  # the first photo with the first model, ...
    assert sorted(p.name for p in (tmp_path / "zip").iterdir()) == ["p0_x_tiny.png", "p1_x_other.png"]
    uneven = invoke("run", photos, "-m", model, "--pairs", "zip", "-o", tmp_path / "zip2")
    assert uneven.exit_code == 2 and "--pairs zip needs as many models as contents" in uneven.stderr
    # A broken model is found before any photo is stylised.
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    runs = []
    monkeypatch.setattr(stylize.job.Fast, "run", lambda *a, **k: runs.append(1))
    bad = invoke("run", photos, "-m", model, "-m", tmp_path / "broken.pt", "-o", tmp_path / "out2")
    assert bad.exit_code == 2 and "broken.pt" in bad.stderr and runs == [] and not (tmp_path / "out2").exists()
    (tmp_path / "again").mkdir()
    save_model(tmp_path / "again" / "tiny.pt", TransformerNet(TransformerConfig(width=4, blocks=1)), {})
    clash = invoke("run", photos, "-m", model, "-m", tmp_path / "again" / "tiny.pt", "-o", tmp_path / "out3")
    assert clash.exit_code == 2 and "have one name, tiny, and would write the same files" in clash.stderr


def test_a_batch_takes_one_mask_for_all_or_a_folder_of_masks_named_as_the_photos(tmp_path, styles, model):
    import numpy as np

    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    for index, (name, black) in enumerate((("a", (24, 0, 48, 40)), ("b", (0, 0, 24, 40)))):
        scene(48, 40, seed=index).save(photos / f"{name}.png")
        mask = Image.new("L", (48, 40), 255)
        mask.paste(0, black)  # a: the right half kept as the photo; b: the left half
        mask.save(masks / f"{name}.png")
    rgb = lambda path: np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)  # noqa: E731
    for method in (["--model", model], ["-s", styles[0], "--size", "48", "--iterations", "3"]):
        out = tmp_path / f"out{len(method)}"
        result = invoke("run", photos, *method, "--mask", masks, "-o", out, "--quiet")
        assert result.exit_code == 0, result.output
        label = "tiny" if method[0] == "--model" else "s1"
        for name, kept, painted in (("a", np.s_[:, 28:], np.s_[:, :20]), ("b", np.s_[:, :20], np.s_[:, 28:])):
            made, photo = rgb(out / f"{name}_x_{label}.png"), rgb(photos / f"{name}.png")
            assert np.abs(made[kept] - photo[kept]).max() <= 1.0, name
            assert np.abs(made[painted] - photo[painted]).mean() > 3, name
            recipe = json.loads(invoke("info", out / f"{name}_x_{label}.png", "--json").stdout)
            assert {"role": "mask", "file": f"{name}.png"}.items() <= recipe["inputs"][-1].items()
    # One mask image for every photo, inverted.
    result = invoke("run", photos, "--model", model, "--mask", masks / "a.png", "--invert-mask", "-o",
                    tmp_path / "one", "--quiet")
    assert result.exit_code == 0, result.output
    for name in ("a", "b"):
        made, photo = rgb(tmp_path / "one" / f"{name}_x_tiny.png"), rgb(photos / f"{name}.png")
        assert np.abs(made[:, :20] - photo[:, :20]).max() <= 1.0


def test_a_batchs_masks_are_all_found_before_any_work(tmp_path, model):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        scene(48, 40).save(photos / f"{name}.png")
    Image.new("L", (48, 40), 255).save(masks / "a.png")
    Image.new("L", (48, 40), 255).save(masks / "a.old.png")  # another name: not a's mask, nor b's
    cases = [(masks, "no mask for b.png; put an image named b.png (or .jpg, ...) in"),
             (photos, "holds the photos themselves; keep their masks in a folder of their own"),
             (tmp_path / "nope", "no such file")]
    for mask, message in cases:
        result = invoke("run", photos, "--model", model, "--mask", mask, "-o", tmp_path / "out")
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output, result.output
    Image.new("L", (48, 40), 255).save(masks / "b.jpg")
    Image.new("L", (48, 40), 255).save(masks / "b.png")
    result = invoke("run", photos, "--model", model, "--mask", masks, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "b.jpg and b.png are both masks for b.png; keep one" in result.stderr
    (masks / "b.jpg").unlink()
    result = invoke("run", photos, "--model", model, "--mask", masks, "-o", masks, "--name", "{content}.png",
                    "--overwrite")
    assert result.exit_code == 2 and "is the --mask of this run and is never written over" in result.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in masks.iterdir()) == ["a.old.png", "a.png", "b.png"]


def test_iterations_for_more_scales_than_the_size_makes_are_refused_before_any_photo(folder, styles, tmp_path):
    result = invoke("run", folder, "-s", styles[0], "--size", "128", "--iterations", "20,10", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--iterations lists 2 values but --size 128 makes 1 scale" in lines[0], result.stderr
    assert not any((tmp_path / "out").rglob("*.png"))
