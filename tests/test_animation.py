"""Animated GIF, WebP and PNG photos: every frame stylised, written back as an animation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageSequence
from typer.testing import CliRunner

from conftest import scene
from stylize.animation import check_animation
from stylize.cli import app
from stylize.config import FIRST_FRAME_ITERATIONS
from stylize.errors import ResourceError
from stylize.imageio import LoadedImage, to_gif

runner = CliRunner()
DURATIONS = [60, 120, 180]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def frames_of(path: Path, mode: str = "RGB") -> list[Image.Image]:
    with Image.open(path) as img:
        return [frame.convert(mode) for frame in ImageSequence.Iterator(img)]


def pixels(picture: Image.Image) -> torch.Tensor:
    return torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8).float()


def local_palettes(path: Path) -> list[bool]:
    """For each frame of a GIF file, whether it brings a palette of its own (else the file's is used)."""
    data = path.read_bytes()
    flags = data[10]
    at, found = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0), []

    def skip_blocks(at: int) -> int:
        while data[at]:
            at += data[at] + 1
        return at + 1

    while data[at] != 0x3B:  # the trailer
        if data[at] == 0x21:  # an extension: its label, then sub-blocks
            at = skip_blocks(at + 2)
            continue
        assert data[at] == 0x2C, "an image descriptor"
        packed = data[at + 9]
        found.append(bool(packed & 0x80))
        at += 10 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
        at = skip_blocks(at + 1)  # the LZW code size, then the data's sub-blocks
    return found


def moving(tmp_path: Path, suffix: str = ".gif", clear: bool = False) -> tuple[Path, list[Image.Image]]:
    """A 3-frame animation of a scene panning, each frame different; ``clear``: its top-left
    corner transparent."""
    whole = scene(64, 40, seed=3)
    frames = [whole.crop((8 * i, 0, 8 * i + 48, 40)) for i in range(3)]
    if clear:
        frames = [f.convert("RGBA") for f in frames]
        for f in frames:
            f.paste((0, 0, 0, 0), (0, 0, 12, 10))
    path = tmp_path / f"anim{suffix}"
    options = {"lossless": True} if suffix == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0, **options)
    return path, frames


def test_an_animated_gif_becomes_an_animated_gif_with_every_frame_stylised_and_its_timing(tmp_path):
    anim, _ = moving(tmp_path)
    result = invoke("run", anim, "-m", "starry_night")
    assert result.exit_code == 0, result.output
    out = tmp_path / "anim_x_starry_night.gif"  # beside the photo, in the photo's own format
    assert "3 frames" in result.output
    with Image.open(out) as img:
        assert img.n_frames == 3 and img.info["loop"] == 0
        durations = []
        for frame in ImageSequence.Iterator(img):
            frame.load()
            durations.append(frame.info["duration"])
    assert durations == DURATIONS


def test_each_frame_is_stylised_as_that_frame_alone_would_be(tmp_path):
    """An APNG output (lossless): frame i is, byte for byte, the still result of frame i."""
    anim, frames = moving(tmp_path)
    assert invoke("run", anim, "-m", "starry_night", "-o", tmp_path / "out.png").exit_code == 0
    got = frames_of(tmp_path / "out.png")
    assert len(got) == 3
    for index, frame in enumerate(frames):
        # The GIF's frames as Pillow decodes them (its 256 colours), each stylised as a still.
        still = tmp_path / f"frame{index}.png"
        frames_of(anim)[index].save(still)
        assert invoke("run", still, "-m", "starry_night", "-o", tmp_path / f"still{index}.png").exit_code == 0
        with Image.open(tmp_path / f"still{index}.png") as expected:
            assert got[index].tobytes() == expected.convert("RGB").tobytes(), index
    assert got[0].tobytes() != got[1].tobytes()  # the frames differ: not one frame repeated


def test_a_gif_output_shares_one_palette_and_stays_close_to_the_lossless_frames(tmp_path):
    anim, _ = moving(tmp_path)
    assert invoke("run", anim, "-m", "starry_night", "-o", tmp_path / "out.png").exit_code == 0
    assert invoke("run", anim, "-m", "starry_night", "-o", tmp_path / "out.gif").exit_code == 0
    assert local_palettes(tmp_path / "out.gif") == [False, False, False]  # all in the global one
    for gif, exact in zip(frames_of(tmp_path / "out.gif"), frames_of(tmp_path / "out.png")):
        # 256 colours, dithered: each pixel off by rounding, the frame's average by far less
        assert (pixels(gif) - pixels(exact)).abs().mean() < 8


def test_to_gif_keeps_the_colours_of_every_frame_in_its_one_palette():
    red, blue = Image.new("RGB", (20, 20), (250, 10, 10)), Image.new("RGB", (20, 20), (10, 10, 250))
    (first, second), clear = to_gif([red, blue])
    assert clear is None and first.getpalette() == second.getpalette()
    assert first.convert("RGB").tobytes() == red.tobytes() and second.convert("RGB").tobytes() == blue.tobytes()


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_clear_pixels_stay_clear_in_every_frame(tmp_path, suffix):
    anim, _ = moving(tmp_path, ".png", clear=True)
    assert invoke("run", anim, "-m", "starry_night", "-o", tmp_path / f"out{suffix}").exit_code == 0
    frames = frames_of(tmp_path / f"out{suffix}", "RGBA")
    assert len(frames) == 3
    for frame in frames:
        assert frame.getpixel((2, 2))[3] == 0 and frame.getpixel((40, 30))[3] == 255


def test_webp_animations_and_a_batch_with_an_animation_and_a_still(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    moving(folder, ".webp")
    scene(48, 40).save(folder / "still.png")
    result = invoke("run", folder, "-m", "starry_night", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "anim_x_starry_night.webp") as img:
        assert img.n_frames == 3
    with Image.open(tmp_path / "out" / "still_x_starry_night.png") as img:
        assert not getattr(img, "is_animated", False)
    again = invoke("run", folder, "-m", "starry_night", "-o", tmp_path / "out")  # resumes: nothing to do
    assert again.exit_code == 0 and "0 to do" in again.output


def test_the_recipe_of_an_animated_gif_makes_the_same_bytes_again(tmp_path, monkeypatch):
    anim, _ = moving(tmp_path)
    monkeypatch.chdir(tmp_path)  # the command names its files as the folder that holds them does
    assert invoke("run", anim, "-m", "starry_night", "--strength", "0.6").exit_code == 0
    out = tmp_path / "anim_x_starry_night.gif"
    info = invoke("info", out)
    assert info.exit_code == 0, info.output
    command = next(line.split() for line in info.output.splitlines() if line.strip().startswith("stylize run"))
    assert "--strength" in command
    again = invoke(*command[1:], "-o", tmp_path / "again.gif")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.gif").read_bytes() == out.read_bytes()


def test_a_mask_keeps_the_photo_where_it_is_black_in_every_frame(tmp_path):
    anim, _ = moving(tmp_path)
    mask = Image.new("L", (48, 40), 255)
    mask.paste(0, (0, 0, 24, 40))  # the left half black
    mask.save(tmp_path / "half.png")
    result = invoke("run", anim, "-m", "starry_night", "--mask", tmp_path / "half.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    for got, photo in zip(frames_of(tmp_path / "out.png"), frames_of(anim), strict=True):
        assert got.crop((0, 0, 24, 40)).tobytes() == photo.crop((0, 0, 24, 40)).tobytes()
        assert got.crop((24, 0, 48, 40)).tobytes() != photo.crop((24, 0, 48, 40)).tobytes()


def halves(black: list[str], size: tuple[int, int] = (48, 40)) -> list[Image.Image]:
    """Mattes: white, with the left or right half (or "all", or "none") black, one per frame."""
    mattes = []
    for side in black:
        matte = Image.new("L", size, 0 if side == "all" else 255)
        if side in ("left", "right"):
            matte.paste(0, (0 if side == "left" else 24, 0, 24 if side == "left" else 48, 40))
        mattes.append(matte)
    return mattes


def test_an_animated_mask_gives_each_frame_its_own(tmp_path, photo):
    anim, _ = moving(tmp_path)
    mattes = halves(["left", "right", "none"])
    mattes[0].save(tmp_path / "matte.png", save_all=True, append_images=mattes[1:])  # (APNG: not merged)
    result = invoke("run", anim, "-m", "starry_night", "--mask", tmp_path / "matte.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    made, photos = frames_of(tmp_path / "out.png"), frames_of(anim)
    left, right = (0, 0, 24, 40), (24, 0, 48, 40)
    assert made[0].crop(left).tobytes() == photos[0].crop(left).tobytes()
    assert made[0].crop(right).tobytes() != photos[0].crop(right).tobytes()
    assert made[1].crop(right).tobytes() == photos[1].crop(right).tobytes()
    assert made[1].crop(left).tobytes() != photos[1].crop(left).tobytes()
    assert made[2].crop(left).tobytes() != photos[2].crop(left).tobytes()
    # An animated mask needs an animation of as many frames.
    mattes[0].save(tmp_path / "two.png", save_all=True, append_images=mattes[1:2])
    for content, mask, what in ((anim, "two.png", "an animation of 3 frames"), (photo, "matte.png", "a still photo")):
        refused = invoke("run", content, "-m", "starry_night", "--mask", tmp_path / mask, "-o", tmp_path / "no.png")
        assert refused.exit_code == 2 and what in refused.output and "an animated mask of" in refused.output
    assert not (tmp_path / "no.png").exists()


def test_the_iterative_method_keeps_the_photo_where_a_frames_matte_is_empty(tmp_path, painting):
    anim, _ = moving(tmp_path)
    mattes = halves(["none", "all", "none"])
    mattes[0].save(tmp_path / "matte.png", save_all=True, append_images=mattes[1:])
    result = invoke("run", anim, painting, *ITERATIVE, "--mask", tmp_path / "matte.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    made, photos = frames_of(tmp_path / "out.png"), frames_of(anim)
    assert made[1].tobytes() == photos[1].tobytes()
    assert made[0].tobytes() != photos[0].tobytes() and made[2].tobytes() != photos[2].tobytes()


def test_formats_of_one_picture_refuse_an_animation_before_any_work(tmp_path, painting):
    anim, _ = moving(tmp_path)
    for method in (("-m", "starry_night"), (painting, "--iterations", "1", "--size", "48")):
        result = invoke("run", anim, *method, "-o", tmp_path / "out.jpg")
        assert result.exit_code == 2, result.output
        assert "animation of 3 frames and JPEG holds one picture" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.jpg").exists() and not (tmp_path / ".out.jpg.frames").exists()


def test_a_truncated_animation_is_one_line_and_writes_nothing(tmp_path):
    anim, _ = moving(tmp_path)
    data = anim.read_bytes()
    anim.write_bytes(data[: len(data) * 2 // 3])  # the first frame whole, a later one cut
    result = invoke("run", anim, "-m", "starry_night", "-o", tmp_path / "out.gif")
    assert result.exit_code == 2 and "truncated or corrupt" in result.output
    assert not (tmp_path / "out.gif").exists() and not list(tmp_path.glob(".out.gif.*"))


def test_frames_too_many_to_hold_are_refused_before_any_work(tmp_path):
    huge = LoadedImage(rgb=torch.zeros(1, 3, 8, 8), alpha=None, path=tmp_path / "a.gif", frames=10**7)
    with pytest.raises(ResourceError, match="10000000 frames of 4000x3000"):
        check_animation(huge, tmp_path / "out.gif", (3000, 4000))


def test_a_still_can_be_written_as_a_gif(tmp_path, photo):
    assert invoke("run", photo, "-m", "starry_night", "--format", "gif", "-o", tmp_path / "out").exit_code == 0
    with Image.open(tmp_path / "out" / "photo_x_starry_night.gif") as img:
        assert img.format == "GIF" and img.size == (48, 40) and not getattr(img, "is_animated", False)


# ------------------------------------------------------------------ the iterative method

ITERATIVE = ("--size", "48", "--iterations", "4")


def temporal_error(frames: list[Image.Image]) -> float:
    """Each frame against the one before, moved with the scene (8 px a frame to the left)."""
    errors = [(pixels(after.crop((0, 0, 40, 40))) - pixels(before.crop((8, 0, 48, 40)))).abs().mean()
              for before, after in zip(frames, frames[1:])]
    return float(sum(errors) / len(errors)) / 255


def test_the_iterative_method_makes_every_frame_each_from_the_one_before(tmp_path, painting):
    """The frames come back as an animation; the first as a still run makes it, the later ones
    steadier than stills (each goes on from the frame before, moved with the camera)."""
    anim, frames = moving(tmp_path)
    steady = ("--size", "48", "--iterations", "25")  # enough to paint: 4 leave each still near its photo
    first = ("--size", "48", "--iterations", str(25 * FIRST_FRAME_ITERATIONS))  # a sequence's first frame
    result = invoke("run", anim, painting, *steady, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert "3 frames" in result.output and not (tmp_path / ".out.png.frames").exists()
    made = frames_of(tmp_path / "out.png")
    stills = []
    for index in range(3):
        frames_of(anim)[index].save(tmp_path / f"frame{index}.png")
        options = first if index == 0 else steady
        assert invoke("run", tmp_path / f"frame{index}.png", painting, *options).exit_code == 0
        with Image.open(tmp_path / f"frame{index}_x_painting.png") as still:
            stills.append(still.convert("RGB"))
    assert made[0].tobytes() == stills[0].tobytes()
    assert temporal_error(made) < 0.6 * temporal_error(stills)  # 0.18 against 0.40 when written
    with Image.open(tmp_path / "out.png") as img:
        assert img.n_frames == 3 and img.info["loop"] == 0


def test_an_interrupted_animation_goes_on_from_its_frames_to_the_same_file(tmp_path, painting, monkeypatch):
    from stylize.animated import execute_animation, work_folder
    anim, _ = moving(tmp_path)
    monkeypatch.chdir(tmp_path)  # (the recipes name the inputs without folders: one folder for both runs)
    straight = invoke("run", anim.name, painting.name, *ITERATIVE, "-o", "straight.gif")
    assert straight.exit_code == 0, straight.output

    from stylize import job as jobs
    from stylize.config import BackboneConfig, RunConfig
    job = jobs.prepare(anim, [painting], tmp_path / "resumed.gif", RunConfig(size=48, iterations=(4,)),
                       BackboneConfig(), "cpu", overwrite=False)
    reported: list[int] = []

    def stop_in_the_second_frame(progress) -> None:
        if reported[-1] == 1:
            raise KeyboardInterrupt

    first = execute_animation(job, lambda p: reported.append(p.done), stop_in_the_second_frame)
    assert first.interrupted and not (tmp_path / "resumed.gif").exists()
    assert sorted(p.name for p in work_folder(tmp_path / "resumed.gif").iterdir()) == ["00001.png", "run.txt"]

    resumed = invoke("run", anim.name, painting.name, *ITERATIVE, "-o", "resumed.gif")
    assert resumed.exit_code == 0, resumed.output
    assert "1 of them made by the interrupted run before" in resumed.output
    assert (tmp_path / "resumed.gif").read_bytes() == (tmp_path / "straight.gif").read_bytes()
    assert not work_folder(tmp_path / "resumed.gif").exists()


def test_frames_of_another_run_are_never_taken_nor_lost(tmp_path, painting):
    from stylize.animated import work_folder
    anim, _ = moving(tmp_path)
    folder = work_folder(tmp_path / "out.gif")
    folder.mkdir()
    (folder / "run.txt").write_text("another run")
    (folder / "00001.png").write_bytes(b"kept")
    result = invoke("run", anim, painting, *ITERATIVE, "-o", tmp_path / "out.gif")
    assert result.exit_code == 2 and "other inputs or settings" in result.output
    assert (folder / "00001.png").read_bytes() == b"kept" and not (tmp_path / "out.gif").exists()


def test_options_for_one_picture_are_refused_with_an_animation(tmp_path, painting, photo):
    anim, _ = moving(tmp_path)
    init = invoke("run", anim, painting, *ITERATIVE, "--init-image", photo)
    assert init.exit_code == 2 and "--init-image is for one picture" in init.output
    snapshots = invoke("run", anim, painting, *ITERATIVE, "--save-every", "2")
    assert snapshots.exit_code == 2 and "--save-every is for one picture" in snapshots.output
    previous = invoke("run", anim, painting, *ITERATIVE, "--init", "previous")  # what an animation does anyway
    assert previous.exit_code == 0, previous.output
    sequence = invoke("run", anim, photo, "-s", painting, *ITERATIVE, "--init", "previous", "-o", tmp_path / "seq")
    assert sequence.exit_code == 1 and "an animation of 3 frames among the frames of --init previous" in \
        " ".join(sequence.output.split())
    assert (tmp_path / "seq" / "photo_x_painting.png").exists()


def test_an_iterative_batch_makes_its_animations_frame_by_frame(tmp_path, painting, photo):
    anim, _ = moving(tmp_path)
    batch = invoke("run", anim, photo, "-s", painting, *ITERATIVE, "-o", tmp_path / "out")
    assert batch.exit_code == 0, batch.output
    assert len(frames_of(tmp_path / "out" / "anim_x_painting.gif")) == 3
    assert (tmp_path / "out" / "photo_x_painting.png").exists()
    assert not (tmp_path / "out" / ".anim_x_painting.gif.frames").exists()
    # the same frames as the animation alone makes (the first frame: as its still)
    alone = invoke("run", anim, painting, *ITERATIVE, "-o", tmp_path / "alone.png")
    assert alone.exit_code == 0, alone.output
    lossless = invoke("run", anim, photo, "-s", painting, *ITERATIVE, "-o", tmp_path / "png", "--format", "png")
    assert lossless.exit_code == 0, lossless.output
    assert [f.tobytes() for f in frames_of(tmp_path / "png" / "anim_x_painting.png")] == \
        [f.tobytes() for f in frames_of(tmp_path / "alone.png")]


def test_a_gif_of_a_still_camera_flickers_no_more_than_its_frames_do(tmp_path):
    """One palette, undithered: no dots that move with every small change of a frame (Floyd and
    Steinberg's error diffusion made 1.23x the lossless frames' change from frame to frame)."""
    whole = scene(96, 80, seed=5)
    noise = torch.Generator().manual_seed(0)
    frames = []
    for _ in range(4):  # one view, each frame with its own sensor noise
        values = pixels(whole).view(80, 96, 3) + torch.randn(80, 96, 3, generator=noise) * 3
        frames.append(Image.fromarray(values.round().clamp(0, 255).to(torch.uint8).numpy()))
    frames[0].save(tmp_path / "still.webp", save_all=True, append_images=frames[1:], duration=80, lossless=True)
    for suffix in (".png", ".gif"):
        made = invoke("run", tmp_path / "still.webp", "-m", "starry_night", "-o", tmp_path / f"out{suffix}")
        assert made.exit_code == 0, made.output

    def change(path: Path) -> float:
        made = [pixels(f) for f in frames_of(path)]
        return float(sum((b - a).abs().mean() for a, b in zip(made, made[1:])))

    assert change(tmp_path / "out.gif") < 1.12 * change(tmp_path / "out.png")  # 1.06x when written; diffused 1.23x


def test_an_apngs_default_image_is_not_taken_for_a_frame(tmp_path):
    """An APNG may carry a picture for viewers without APNG that is not one of its frames."""
    _, frames = moving(tmp_path)
    scene(48, 40, seed=9).save(tmp_path / "anim.png", save_all=True, append_images=frames, default_image=True,
                               duration=[10, *DURATIONS], loop=0)
    assert invoke("run", tmp_path / "anim.png", "-m", "starry_night", "-o", tmp_path / "out.png").exit_code == 0
    assert invoke("run", tmp_path / "anim.gif", "-m", "starry_night", "-o", tmp_path / "gif.png").exit_code == 0
    with Image.open(tmp_path / "out.png") as img:
        assert img.n_frames == 3 and not img.default_image
    # the same frames as the GIF of the same frames makes (each within the GIF's 256 colours)
    for made, expected in zip(frames_of(tmp_path / "out.png"), frames_of(tmp_path / "gif.png"), strict=True):
        assert (pixels(made) - pixels(expected)).abs().mean() < 8


def test_a_batchs_folder_of_mattes_may_hold_an_animated_one(tmp_path):
    folder, mattes = tmp_path / "in", tmp_path / "mattes"
    folder.mkdir()
    mattes.mkdir()
    anim, _ = moving(folder)
    scene(48, 40).save(folder / "still.png")
    frames = halves(["left", "right", "left"])
    frames[0].save(mattes / "anim.png", save_all=True, append_images=frames[1:])
    halves(["right"])[0].save(mattes / "still.png")
    result = invoke("run", folder, "-m", "starry_night", "--mask", mattes, "-o", tmp_path / "out", "--format", "png")
    assert result.exit_code == 0, result.output
    made, photos = frames_of(tmp_path / "out" / "anim_x_starry_night.png"), frames_of(anim)
    for index, kept in enumerate([(0, 0, 24, 40), (24, 0, 48, 40), (0, 0, 24, 40)]):
        assert made[index].crop(kept).tobytes() == photos[index].crop(kept).tobytes()
