"""The command line as a user meets it: Typer's CliRunner on tiny generated images."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from typer.testing import CliRunner

from stylize.cli import app

from conftest import scene, sigint_default

runner = CliRunner()
FAST = ["--size", "48", "--iterations", "3", "--quiet"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_run_writes_the_output(photo, painting, tmp_path):
    out = tmp_path / "out.png"
    result = invoke("run", photo, painting, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "saved" in result.stdout
    with Image.open(out) as img:
        assert img.size == (48, 40) and img.mode == "RGB"


def test_default_output_name_beside_the_photo(photo, painting):
    result = invoke("run", photo, painting, *FAST)
    assert result.exit_code == 0, result.output
    assert (photo.parent / "photo_x_painting.png").is_file()


def test_output_folder_gets_the_default_name(photo, painting, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    assert invoke("run", photo, painting, "-o", folder, *FAST).exit_code == 0
    assert (folder / "photo_x_painting.png").is_file()


def test_existing_output_is_not_overwritten(photo, painting, tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    result = invoke("run", photo, painting, "-o", out, *FAST)
    assert_one_line_error(result, "exists", "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert invoke("run", photo, painting, "-o", out, "--overwrite", *FAST).exit_code == 0
    assert out.read_bytes() != b"keep me"


def test_same_seed_same_file(photo, painting, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        assert invoke("run", photo, painting, "-o", out, "--init", "random", "--seed", "5", *FAST).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_alpha_channel_is_kept(tmp_path, painting):
    rgba = scene(48, 40).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((48, 40)))
    photo = tmp_path / "cutout.png"
    rgba.save(photo)
    out = tmp_path / "out.png"
    assert invoke("run", photo, painting, "-o", out, *FAST).exit_code == 0
    with Image.open(out) as img:
        assert img.mode == "RGBA"
        original = rgba.getchannel("A")
        kept = img.getchannel("A")
        assert max(abs(p - q) for p, q in zip(original.tobytes(), kept.tobytes())) <= 2


def test_save_every_writes_intermediate_images(photo, painting, tmp_path):
    out = tmp_path / "out.png"
    result = invoke("run", photo, painting, "-o", out, "--size", "48", "--iterations", "4", "--save-every", "2",
                    "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("out.scale*")) == ["out.scale1.iter0002.png", "out.scale1.iter0004.png"]


def test_several_styles_blended_with_preserved_colour(photo, painting, tmp_path):
    second = tmp_path / "second.png"
    scene(40, 40, seed=3).save(second)
    out = tmp_path / "blend.jpg"
    result = invoke("run", photo, painting, second, "--style-blend", "0.7,0.3", "--preserve-color", "-o", out,
                    "--style-loss", "meanstd", "--optimizer", "adam", *FAST)
    assert result.exit_code == 0, result.output
    assert Image.open(out).format == "JPEG"


def test_progress_bar_shows_scales_and_losses(photo, painting, tmp_path, monkeypatch):
    from rich.console import Console

    from stylize.cli import display

    # A terminal of 80 columns, a common one: the losses must give way, not the bar's times.
    monkeypatch.setattr(display, "err_console", Console(stderr=True, force_terminal=True, width=80))
    result = invoke("run", photo, painting, "-o", tmp_path / "o.png", "--size", "64", "--scales", "2",
                    "--iterations", "2")
    assert result.exit_code == 0, result.output
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", result.stderr).replace("\r", "\n")
    line = [line for line in screen.splitlines() if "scale 2/2" in line][-1]
    assert "100%" in line and len(re.findall(r"\d:\d\d:\d\d", line)) == 2, line  # elapsed and remaining
    assert "loss" in line and len(line) <= 80


@pytest.mark.parametrize("every", [0.0, 3600.0])
def test_progress_is_logged_in_lines_where_stderr_is_not_a_terminal(photo, painting, tmp_path, monkeypatch, every):
    from stylize.cli import display

    monkeypatch.setattr(display, "LOG_SECONDS", every)
    result = invoke("run", photo, painting, "-o", tmp_path / "o.png", "--size", "64", "--scales", "2",
                    "--iterations", "3,1")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr  # no cursor movements or colours in a log file
    lines = [line for line in result.stderr.splitlines() if line.startswith("scale ")]
    # Every iteration when the interval has passed each time; else only the last one, when the run completes.
    assert len(lines) == (4 if every == 0 else 1), lines
    if every == 0:  # the share done weighs each iteration by its scale's pixels: an honest ETA
        (w1, h1), (w2, h2) = (map(int, re.match(r"scale \d/2 (\d+)x(\d+)", lines[i]).groups()) for i in (0, 3))
        first, second = 3 * w1 * h1, w2 * h2  # 3 iterations at the small scale, 1 at the large
        done = [first / 3, 2 * first / 3, first, first + second]
        percents = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines]
        assert percents == [round(100 * d / (first + second)) for d in done], lines
    assert re.fullmatch(r"scale 2/2 64x\d+ it 1/1 \(100%\), \d:\d\d:\d\d elapsed; loss \S+ \(content \S+ style \S+ "
                        r"tv \S+\)", lines[-1]), lines[-1]  # whole: a log line is never cut short


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["missing", "directory", "text", "empty", "truncated", "tiny", "pipe",
                                  "broken link", "link loop"])
def test_bad_content_image(case, painting, tmp_path):
    if case == "missing":
        path, message = tmp_path / "nope.jpg", "no such file"
    elif case == "pipe":  # reading it would wait for a writer; it was called missing
        path, message = tmp_path / "pipe.jpg", "not a regular file (a device, pipe or socket)"
        os.mkfifo(path)
    elif case == "broken link":
        path, message = tmp_path / "gone.jpg", "a broken symbolic link"
        path.symlink_to(tmp_path / "deleted.jpg")
    elif case == "link loop":
        path, message = tmp_path / "a.jpg", "too many levels of symbolic links"
        path.symlink_to(tmp_path / "b.jpg")
        (tmp_path / "b.jpg").symlink_to(path)
    elif case == "directory":  # a folder is a batch input; an empty one has nothing to do
        path, message = tmp_path / "empty", "no content images"
        path.mkdir()
    elif case == "text":
        path, message = _bad(tmp_path, "notes.jpg", b"just some text"), "not an image"
    elif case == "empty":
        path, message = _bad(tmp_path, "empty.jpg", b""), "empty"
    elif case == "truncated":
        full = tmp_path / "full.jpg"
        scene(64, 64).save(full)
        path, message = _bad(tmp_path, "cut.jpg", full.read_bytes()[:600]), "truncated"
    else:
        path, message = tmp_path / "tiny.png", "at least 16 px"
        scene(10, 10).save(path)
    out = tmp_path / "out.png"
    assert_one_line_error(invoke("run", path, painting, "-o", out, *FAST), message)
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (["--style-weight", "-1"], "style weight"),
    (["--content-weight", "nan"], "content weight"),
    (["--style-layers", "relu1_1,relu4_3x"], "did you mean relu4_3"),
    (["--content-layers", "relu9_9"], "unknown content layer"),
    (["--backbone", "resnet"], "resnet"),
    (["--style-blend", "0.5,abc"], "--style-blend"),
    (["--style-blend", "0.5,0.2,0.3"], "3 weights for 1 style"),
    (["--device", "tpu"], "unknown device"),
    (["--size", "8"], "--size"),
    (["--iterations", "0"], "--iterations"),
    (["--iterations", "1.5"], "--iterations: expected comma-separated whole numbers like 200,70"),
    (["--scales", "128,x"], "--scales: expected comma-separated whole numbers"),
    (["--size", "48", "--scales", "32,64"], "--scales 64 is larger than --size 48"),
    (["--style-layers", "relu1_1:x"], "not a number"),
    (["--style-scale", "0"], "--style-scale"),
    # Infinities ran: no loss below infinity, the start image came back, or a traceback.
    (["--style-weight", "inf"], "style weight must be zero or positive (and finite)"),
    (["--style-scale", "inf"], "--style-scale must be positive (and finite)"),
    (["--optimizer", "adam", "--lr", "inf"], "--lr must be positive (and finite)"),
    (["--style-layers", "relu1_1:inf"], "layer weights must be zero or positive (and finite)"),
    # Beyond torch's 64-bit seeds: a traceback from manual_seed.
    (["--seed", "99999999999999999999"], "--seed must be between 0 and 4294967295"),
    (["--seed", "-1"], "--seed must be between 0 and 4294967295"),
])
def test_bad_options(photo, painting, tmp_path, args, message):
    out = tmp_path / "out.png"
    result = invoke("run", photo, painting, "-o", out, "--quiet", *args)
    assert_one_line_error(result, message)
    assert not out.exists()


def test_average_pooling_paints_another_picture(photo, painting, tmp_path):
    out = {}
    for pooling in ("max", "average"):
        out[pooling] = tmp_path / f"{pooling}.png"
        result = invoke("run", photo, painting, "-o", out[pooling], "--pooling", pooling, *FAST)
        assert result.exit_code == 0, result.output
    with Image.open(out["max"]) as a, Image.open(out["average"]) as b:
        assert a.size == b.size and ImageChops.difference(a, b).getbbox() is not None
    assert_one_line_error(invoke("run", photo, painting, "--pooling", "mean"), "--pooling")


def test_choices_are_read_in_any_case(photo, painting, tmp_path):
    choices = ["--pooling", "average", "--optimizer", "lbfgs", "--style-loss", "gram", "--format", "png"]
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    assert invoke("run", photo, painting, "-o", lower, *choices, *FAST).exit_code == 0
    result = invoke("run", photo, painting, "-o", upper, *[c.upper() if i % 2 else c for i, c in enumerate(choices)],
                    *FAST)
    assert result.exit_code == 0, result.output
    name = "photo_x_painting.png"
    assert (upper / name).read_bytes() == (lower / name).read_bytes()


def test_unavailable_cuda_is_explained(photo, painting, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(invoke("run", photo, painting, "--device", "cuda", *FAST), "CUDA is not available")


def test_unwritable_output_folder(photo, painting, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke("run", photo, painting, "-o", blocker / "out.png", *FAST),
                          "file: is a file, not a folder")
    # A name without a suffix is a folder; an existing file of that name was "File exists".
    assert_one_line_error(invoke("run", photo, painting, "-o", blocker, *FAST), "such as file.png")
    assert_one_line_error(invoke("run", photo, painting, photo, "-o", blocker, *FAST),
                          "a batch writes into a folder")
    assert blocker.read_text() == "x"
    if os.path.exists("/dev/null"):
        assert_one_line_error(invoke("run", photo, painting, "-o", "/dev/null", *FAST), "such as null.png")


def test_special_files_are_refused_by_what_they_are(photo, painting, tmp_path):
    pipe = tmp_path / "pipe.pt"
    os.mkfifo(pipe)
    expected = "not a regular file (a device, pipe or socket)"
    assert_one_line_error(invoke("run", photo, "--model", pipe, "--quiet"), expected, "a model file")
    assert_one_line_error(invoke("run", photo, painting, "--weights", pipe, *FAST), expected, "a weights file")
    assert_one_line_error(invoke("run", photo, painting, "--init-image", pipe, "-o", tmp_path / "o.png", *FAST),
                          expected, "an image file")
    assert_one_line_error(invoke("train", pipe, "-d", tmp_path, "-o", tmp_path / "m.pt"), expected)


def test_unknown_output_format(photo, painting, tmp_path):
    assert_one_line_error(invoke("run", photo, painting, "-o", tmp_path / "out.xyz", *FAST), "unknown image format")


def test_missing_style_argument(photo):
    assert_one_line_error(invoke("run", photo), "style image")


def test_weights_of_the_wrong_architecture(photo, painting, tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_text("garbage")
    assert_one_line_error(invoke("run", photo, painting, "--weights", weights, *FAST), "w.pth")


def test_info_text_and_json():
    text = invoke("info")
    assert text.exit_code == 0 and "auto picks" in text.stdout and "bundled" in text.stdout
    data = json.loads(invoke("info", "--json").stdout)
    assert data["auto_device"] in {d["device"] for d in data["devices"]} | {"cuda:0", "mps"}
    assert data["backbones"]["vgg16"].startswith("bundled")
    assert set(data["backbones"]) == {"vgg16", "vgg19", "vgg16-imagenet"}
    assert data["cpu_threads"] >= 1 and data["torch"]
    assert 1 <= data["batch_io_threads"] <= 4 and "batch i/o threads" in text.stdout
    assert data["cuda_graphs"] == data["auto_device"].startswith("cuda") and "cuda graphs" in text.stdout
    import torchvision

    assert torchvision.__version__.startswith(data["torchvision"])
    try:
        import onnxruntime
        assert data["onnxruntime"] == onnxruntime.__version__
    except ImportError:
        assert data["onnxruntime"] is None and "pip install 'stylize[onnx]'" in text.stdout


def test_info_does_not_import_torchvision():
    """Importing torchvision took 2 of `stylize info`'s 5 s."""
    code = ("import sys; from typer.testing import CliRunner; from stylize.cli import app; "
            "result = CliRunner().invoke(app, ['info']); print(result.exit_code, 'torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["0", "False"], done.stderr


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_one_line_without_loading_torch(flag):
    from importlib.metadata import version

    from stylize import __version__

    code = ("import sys; from typer.testing import CliRunner; from stylize.cli import app; "
            f"result = CliRunner().invoke(app, ['{flag}', 'run']); print(result.output, end=''); "
            "print(result.exit_code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line, status = done.stdout.splitlines()
    assert line == (f"stylize {__version__} (torch {version('torch')}, torchvision {version('torchvision')}, "
                    f"Python {sys.version.split()[0]})"), done.stdout + done.stderr
    assert status == "0 False"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_keeps_the_best_image_and_exits_non_zero(photo, painting, tmp_path, stop):
    """A real SIGINT (or SIGTERM: kill, timeout, a scheduler) to a real process: the output is
    complete and the exit code is 130."""
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "stylize", "run", str(photo), str(painting), "-o", str(out), "--size", "64",
           "--iterations", "100000", "--scales", "1", "--save-every", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "out.scale1.iter0004.png").exists():
        time.sleep(0.1)  # wait until the optimisation is under way
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with Image.open(out) as img:
        img.load()
        assert img.size == (64, 53)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files
    assert "interrupted" in json.loads(invoke("info", out, "--json").stdout)["stopped"]  # its recipe says so


@pytest.mark.parametrize("parent_ignores_sigint", [False, True])
def test_stop_signals_end_the_process_until_torch_has_loaded(parent_ignores_sigint):
    """While torch imports, a KeyboardInterrupt was swallowed (the run went on) or became an abort:
    Ctrl-C and SIGTERM then end the process at once, and raise KeyboardInterrupt once it has loaded
    (the workflows stop cleanly on that). A SIGINT the parent ignores (a background job) stays ignored."""
    code = ("import signal\n"
            "from stylize import cli\n"
            "show = lambda h: 'ignore' if h is signal.SIG_IGN else 'die' if h is signal.SIG_DFL else 'raise'\n"
            "cli.defer_stop_signals()\n"
            "print(show(signal.getsignal(signal.SIGINT)), show(signal.getsignal(signal.SIGTERM)))\n"
            "cli.arm_stop_signals()\n"
            "print(show(signal.getsignal(signal.SIGINT)), show(signal.getsignal(signal.SIGTERM)))\n")
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if parent_ignores_sigint else sigint_default
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=ignore).stdout
    sigint = "ignore" if parent_ignores_sigint else None
    assert out.splitlines() == [f"{sigint or 'die'} die", f"{sigint or 'raise'} raise"], out


def test_init_image_goes_on_from_an_earlier_result(photo, painting, tmp_path):
    def total(result) -> float:
        assert result.exit_code == 0, result.output
        return float(result.stdout.split("loss: total ")[1].split(",")[0])

    first = tmp_path / "first.png"
    base = ["--size", "48", "--scales", "1", "--quiet"]
    short = total(invoke("run", photo, painting, "-o", first, "--iterations", "5", *base))
    more = total(invoke("run", photo, painting, "-o", tmp_path / "more.png", "--iterations", "5",
                        "--init-image", first, *base))
    assert more < short  # five more iterations from where the first run stopped
    # The way the interrupted run's message says to go on: over its own output (not an input of the run).
    again = total(invoke("run", photo, painting, "-o", first, "--iterations", "5", "--init-image", first,
                         "--overwrite", *base))
    assert again < short
    bad = invoke("run", photo, painting, "-o", tmp_path / "x.png", "--init-image", tmp_path / "nope.png", *base)
    assert_one_line_error(bad, "no such file")


def test_an_init_image_of_another_shape_is_cropped_to_the_photos_proportions_with_a_note(photo, painting,
                                                                                         tmp_path):
    # A wide start image: its centre third is the painting's stripes, its sides black. Stretched
    # onto the 48x40 photo, the black would fill most of the start; cropped, none of it is left.
    start = Image.new("RGB", (144, 40))
    start.paste(Image.open(painting).convert("RGB").resize((48, 40)), (48, 0))
    start_path = tmp_path / "wide.png"
    start.save(start_path)
    result = invoke("run", photo, painting, "-o", tmp_path / "o.png", "--init-image", start_path, "--size", "48",
                    "--scales", "1", "--iterations", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "note: --init-image is 144x40 and the photo 48x40: starting from its centre" in result.stderr
    out = Image.open(tmp_path / "o.png").convert("L")
    assert out.getextrema()[0] > 10  # one iteration from the stripes, not from black sides
    same = invoke("run", photo, painting, "-o", tmp_path / "p.png", "--init-image", tmp_path / "o.png",
                  "--size", "48", "--scales", "1", "--iterations", "1", "--quiet")
    assert same.exit_code == 0 and "note:" not in same.stderr, same.output


def test_a_mistyped_name_gets_a_did_you_mean(photo, painting, tmp_path):
    """A missing photo, painting, start image or model whose name is close to one that exists
    (beside it, or among the bundled models) is named in the message; a name close to nothing
    gets none."""
    out = ["-o", tmp_path / "x.png", "--quiet"]
    typo = tmp_path / "paintng.png"
    assert_one_line_error(invoke("run", photo, typo, *out), f"{typo}: no such file or folder (a style input); "
                          f"did you mean {painting}?")
    assert_one_line_error(invoke("run", photo, painting, "--init-image", tmp_path / "phot.png", *out),
                          f"no such file; did you mean {photo}?")
    assert_one_line_error(invoke("run", photo, "--model", "stary_night", *out),
                          "(bundled: shipwreck, starry_night, the_scream); did you mean starry_night?")
    far = invoke("run", photo, tmp_path / "zebra.png", *out)
    assert_one_line_error(far, "no such file or folder (a style input)")
    assert "did you mean" not in far.stderr
    assert_one_line_error(invoke("run", photo, tmp_path / "gone" / "paintng.png", *out), "no such file or folder")


def test_run_help_states_the_schedule_a_default_run_uses():
    from stylize.config import RunConfig
    from stylize.optimize import plan_schedule

    plan = plan_schedule(384, 512, RunConfig(), min_side=16)
    large = plan_schedule(768, 1024, RunConfig(size=1024), min_side=16)
    assert [max(size) for size, _ in plan] == [256, 512] and [max(size) for size, _ in large] == [256, 512, 1024]
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "300"})  # one line per option
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"Default: {large[0][1]} at each scale before the last, {large[-1][1]} at full size." in text
    assert f"nearest {max(plan[0][0])} px ({len(plan)} at --size 512, {len(large)} at 1024)." in text


def test_help_groups_the_options_by_what_reads_them():
    text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "300"}).output
    panels = re.split(r"╭─ ", text)
    find = lambda title: next(p for p in panels if p.startswith(title))  # noqa: E731
    assert "--style-weight" in find("Iterative method") and "--tile" not in find("Iterative method")
    assert "--strength" in find("With --model") and "--contact-sheet" in find("Batches and output files")
    assert "--model" in find("Options") and "--mask" in find("Options") and "--seed" not in find("Options")
    train = re.split(r"╭─ ", runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).output)
    assert any(p.startswith("The network") and "--shuffle" in p for p in train)
    assert any(p.startswith("The objective") and "--shift-weight" in p for p in train)


def test_the_usage_line_says_once_that_inputs_repeat():
    usage = next(line for line in runner.invoke(app, ["run", "--help"]).output.splitlines() if "Usage:" in line)
    assert usage.rstrip().endswith(" {CONTENT [STYLE]}...")  # (Typer adds the braces and the dots)
