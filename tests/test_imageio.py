import io
import os
import struct
import zlib

import pytest
import torch
from PIL import Image

from stylize.errors import ImageError, OutputError
from stylize.imageio import (apply_mask, check_output, fit_long_side, fit_long_side_at_least, load_image, load_mask,
                             resize, resize_cover, same_proportions, save_image, save_result)

from conftest import scene


def test_rgb_roundtrip_is_exact(tmp_path):
    src = tmp_path / "a.png"
    scene(20, 10).save(src)
    img = load_image(src)
    assert img.rgb.shape == (1, 3, 10, 20) and img.alpha is None and img.size == (10, 20)
    out = tmp_path / "b.png"
    save_image(img.rgb, out)
    assert torch.equal(load_image(out).rgb, img.rgb)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA", "RGBA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    scene(16, 12).convert(mode).save(path)
    img = load_image(path)
    assert img.rgb.shape == (1, 3, 12, 16)
    assert 0.0 <= img.rgb.min() and img.rgb.max() <= 1.0
    assert (img.alpha is not None) == (mode in ("LA", "RGBA"))


def test_palette_with_transparency_keeps_alpha(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    path = tmp_path / "p.png"
    rgba.convert("P").save(path, transparency=0)
    assert load_image(path).alpha is not None


def test_sixteen_bit_gray_uses_full_range(tmp_path):
    gradient = Image.new("I;16", (4, 2))
    for i in range(4):
        gradient.putpixel((i, 0), i * 20000)
        gradient.putpixel((i, 1), 65535)
    path = tmp_path / "g16.png"
    gradient.save(path)
    img = load_image(path)
    assert img.rgb[0, 0, 1, 0].item() == pytest.approx(1.0)
    assert img.rgb[0, 0, 0, 1].item() == pytest.approx(20000 / 65535, abs=1e-4)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    scene(30, 20).save(path, exif=exif)
    assert load_image(path).size == (30, 20)  # (height, width) after rotation


def test_alpha_is_saved_in_png(tmp_path):
    rgb, alpha = torch.rand(1, 3, 6, 5), torch.linspace(0, 1, 30).view(1, 1, 6, 5)
    path = tmp_path / "a.png"
    save_image(rgb, path, alpha)
    back = load_image(path)
    assert back.alpha is not None
    assert torch.allclose(back.alpha, alpha, atol=1 / 255)


@pytest.mark.parametrize("name,data,message", [
    ("empty.png", b"", "empty"),
    ("notes.png", b"hello, I am text", "not an image"),
])
def test_unreadable_files(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match=message):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, fmt):
    buffer = io.BytesIO()
    scene(64, 64).save(buffer, format=fmt)
    path = tmp_path / "cut.img"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 2000)).save(path)
    with pytest.raises(ImageError, match="more than"):
        load_image(path, max_pixels=1_000_000)


def test_save_never_overwrites_without_permission(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        save_image(torch.rand(1, 3, 4, 4), path)
    assert path.read_bytes() == b"precious"
    save_image(torch.rand(1, 3, 4, 4), path, overwrite=True)
    assert load_image(path).size == (4, 4)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temporary files left behind


def test_check_output_rules(tmp_path):
    check_output(tmp_path / "new" / "dir" / "x.png", overwrite=False)  # creates the folders
    assert (tmp_path / "new" / "dir").is_dir()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file.txt: is a file, not a folder"):
        check_output(blocker / "x.png", overwrite=False)
    with pytest.raises(OutputError, match=r"cannot write the output there \(Not a directory\); choose another output "
                                          "folder$"):  # a file on the way to the folder
        check_output(blocker / "sub" / "x.png", overwrite=False)
    with pytest.raises(OutputError, match="unknown image format"):
        check_output(tmp_path / "x.gifx", overwrite=False)
    with pytest.raises(OutputError, match="directory"):
        check_output(tmp_path / "new", overwrite=False)


def test_resize_helpers():
    assert fit_long_side(300, 400, 200) == (150, 200)
    assert fit_long_side(400, 300, 100) == (100, 75)
    assert fit_long_side_at_least(400, 300, 100, 16) == (100, 75)  # as fit_long_side where that suffices
    assert fit_long_side_at_least(20, 3000, 64, 16) == (16, 2400)  # a strip: the short side is kept usable
    assert fit_long_side_at_least(300, 400, 12, 16) == (16, 21)
    small = resize(torch.rand(1, 3, 40, 30), (20, 15))
    assert small.shape == (1, 3, 20, 15) and small.min() >= 0 and small.max() <= 1


def test_resize_cover_keeps_proportions_by_cutting_out_the_centre():
    wide = torch.zeros(1, 3, 20, 60)
    wide[..., 20:40] = 1.0  # a white middle third between black sides
    square = resize_cover(wide, (10, 10))
    assert square.shape == (1, 3, 10, 10) and square.min() > 0.99  # only the middle third: not stretched
    tall = torch.zeros(1, 3, 60, 20)
    tall[..., 20:40, :] = 1.0
    assert resize_cover(tall, (20, 20)).min() > 0.99
    # A shape that agrees but for rounding (an earlier scale's result) is resized whole, as resize does.
    earlier = torch.rand(1, 3, 171, 256)
    assert torch.equal(resize_cover(earlier, (341, 512)), resize(earlier, (341, 512)))
    assert same_proportions(171, 256, 341, 512) and not same_proportions(20, 60, 10, 10)


def test_a_mask_is_its_luminance_times_its_alpha(tmp_path):
    photo = load_image(_saved(scene(40, 30), tmp_path / "photo.png"))
    grey = Image.new("RGBA", (8, 6), (255, 255, 255, 255))
    grey.putpixel((0, 0), (0, 0, 0, 255))  # black: the photo
    grey.putpixel((1, 0), (255, 255, 255, 0))  # white but transparent: the photo too
    grey.putpixel((2, 0), (255, 0, 0, 255))  # pure red: its luminance
    mask = load_mask(_saved(grey, tmp_path / "mask.png"), photo)
    assert mask.shape == (1, 1, 6, 8) and mask[0, 0, 1:].min() == pytest.approx(1.0)
    assert mask[0, 0, 0, :3].tolist() == pytest.approx([0.0, 0.0, 0.299])
    with pytest.raises(ImageError, match="a 6x8 mask for a 40x30 photo"):
        load_mask(_saved(Image.new("L", (6, 8)), tmp_path / "tall.png"), photo)
    with pytest.raises(ImageError, match="black .or transparent. everywhere, so nothing would be stylised"):
        load_mask(_saved(Image.new("L", (8, 6)), tmp_path / "black.png"), photo)
    assert torch.allclose(load_mask(tmp_path / "mask.png", photo, invert=True), 1 - mask)
    with pytest.raises(ImageError, match="white .and opaque. everywhere, so inverted nothing would be stylised"):
        load_mask(_saved(Image.new("L", (8, 6), 255), tmp_path / "white.png"), photo, invert=True)
    blended = apply_mask(torch.ones(1, 3, 30, 40), torch.zeros(1, 3, 30, 40), torch.full((1, 1, 3, 4), 0.25))
    assert blended.shape == (1, 3, 30, 40) and torch.allclose(blended, torch.full_like(blended, 0.25))


def _saved(image: Image.Image, path):
    image.save(path)
    return path


def _claims(path, width: int, height: int) -> None:
    """Rewrite a PNG's header to claim another size (a decompression bomb): nothing else changes."""
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))


def test_bomb_header_refused_before_any_allocation(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (4, 4)).save(path)
    _claims(path, 100_000, 100_000)
    with pytest.raises(ImageError, match=r"100000x100000 is 10,000,000,000 pixels.*--max-pixels"):
        load_image(path)
    with pytest.raises(ImageError, match="truncated or corrupt"):  # a raised limit lets it try (and fail)
        load_image(path, max_pixels=10**11)


def test_cli_bomb_is_one_line_and_max_pixels_raises_the_limit(tmp_path, painting):
    from typer.testing import CliRunner

    from stylize.cli import app

    path = tmp_path / "bomb.png"
    Image.new("RGB", (4, 4)).save(path)
    _claims(path, 100_000, 100_000)
    result = CliRunner().invoke(app, ["run", str(path), str(painting), "-o", str(tmp_path / "o.png"), "-q"])
    assert result.exit_code == 2 and "--max-pixels" in result.stderr and "Traceback" not in result.output
    photo = tmp_path / "photo.png"
    scene(64, 48).save(photo)
    small = CliRunner().invoke(app, ["run", str(photo), str(painting), "-o", str(tmp_path / "o.png"),
                                     "--max-pixels", "1000", "-q"])
    assert small.exit_code == 2 and "more than the limit of 1,000" in small.stderr


def test_colour_profile_and_exif_are_kept_orientation_normalised(tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated
    exif[0x010F] = "Stylize Camera Co."  # Make
    src = tmp_path / "camera.jpg"
    scene(30, 20).save(src, icc_profile=profile, exif=exif)
    loaded = load_image(src)
    assert loaded.size == (30, 20)  # upright
    for suffix in (".png", ".jpg", ".webp", ".tiff"):
        out = tmp_path / f"out{suffix}"
        save_result(loaded.rgb, loaded, out)
        with Image.open(out) as img:
            assert img.info.get("icc_profile") == profile, suffix
            kept = img.getexif()
            assert kept.get(0x010F) == "Stylize Camera Co.", suffix
            assert kept.get(0x0112, 1) == 1, suffix  # the pixels are upright: no rotation on display
        assert load_image(out).size == (30, 20)


def test_cmyk_profile_is_not_attached_to_rgb_output(tmp_path):
    src = tmp_path / "print.jpg"
    fake_cmyk_profile = bytes(16) + b"CMYK" + bytes(108)
    scene(16, 16).convert("CMYK").save(src, icc_profile=fake_cmyk_profile)
    assert load_image(src).metadata.icc_profile is None


def test_png_outputs_are_written_with_zlibs_fastest_setting_and_the_same_pixels(tmp_path):
    """PNG encoding at PIL's default (zlib level 6) took longer than a fast model's pass; stylize
    writes level 1: the zlib stream's header says so (FLEVEL 0, "fastest"), the pixels are exact."""
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    save_image(image, tmp_path / "out.png")
    data = (tmp_path / "out.png").read_bytes()
    idat = data.index(b"IDAT") + 4
    assert data[idat] == 0x78 and data[idat + 1] >> 6 == 0  # deflate; FLEVEL 0
    assert torch.equal(load_image(tmp_path / "out.png").rgb, (image * 255).round() / 255)


@pytest.mark.parametrize("with_alpha", [False, True])
def test_tensor_and_pil_conversions_give_the_plain_arithmetics_values(with_alpha):
    """to_pil and the loader's conversion, each a pass or two: the bytes of clamp, scale, round
    (also outside [0,1] and at the rounding points), and the floats of bytes / 255."""
    from stylize.imageio import to_pil, to_tensors

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 17, 23, generator=generator) * 1.4 - 0.2
    image[0, 0, 0, :5] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255, float("-inf"), float("inf")])
    alpha = torch.rand(1, 1, 17, 23, generator=generator) if with_alpha else None
    planes = image[0] if alpha is None else torch.cat([image[0], alpha[0]])
    expected = (planes.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    picture = to_pil(image, alpha)
    assert picture.mode == ("RGBA" if with_alpha else "RGB") and picture.size == (23, 17)
    assert picture.tobytes() == expected.numpy().tobytes()
    rgb, loaded_alpha = to_tensors(picture)
    assert torch.equal(rgb, expected[..., :3].permute(2, 0, 1).unsqueeze(0).float() / 255.0)
    if with_alpha:
        assert torch.equal(loaded_alpha, expected[..., 3:].permute(2, 0, 1).unsqueeze(0).float() / 255.0)
    else:
        assert loaded_alpha is None


def test_a_large_jpeg_is_decoded_smaller_where_the_short_side_allows(tmp_path):
    photo = scene(800, 600)  # width 800, height 600
    photo.save(tmp_path / "big.jpg", quality=95)
    photo.save(tmp_path / "big.png")
    full = load_image(tmp_path / "big.jpg").rgb
    assert full.shape[-2:] == (600, 800)
    # Short side 600: 1/4 scale keeps 150 >= 140, 1/8 (75) would not.
    small = load_image(tmp_path / "big.jpg", min_short_side=140).rgb
    assert small.shape[-2:] == (150, 200)
    assert (small - resize(full, (150, 200))).abs().mean() < 0.02  # the same picture, smaller
    assert load_image(tmp_path / "big.jpg", min_short_side=301).rgb.shape[-2:] == (600, 800)  # 1/2 is 300
    assert load_image(tmp_path / "big.png", min_short_side=140).rgb.shape[-2:] == (600, 800)  # not a JPEG
    # Orientation is applied after: a rotated photo comes out upright at the reduced size.
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    photo.save(tmp_path / "turned.jpg", quality=95, exif=exif)
    turned = load_image(tmp_path / "turned.jpg", min_short_side=140)
    assert turned.size == (200, 150) and turned.full_size == (800, 600)  # both upright


def test_a_large_jpeg_is_decoded_smaller_where_the_long_side_allows(tmp_path):
    scene(800, 600).save(tmp_path / "big.jpg", quality=95)
    small = load_image(tmp_path / "big.jpg", min_long_side=200)  # 1/4: 200x150; 1/8 (100) would not do
    assert small.size == (150, 200) and small.full_size == (600, 800)
    half = load_image(tmp_path / "big.jpg", min_long_side=201)
    assert half.size == (300, 400) and half.full_size == (600, 800)
    whole = load_image(tmp_path / "big.jpg", min_long_side=900)  # larger than the picture: decoded whole
    assert whole.size == whole.full_size == (600, 800) and whole.reduced_from is None
    both = load_image(tmp_path / "big.jpg", min_long_side=100, min_short_side=140)  # each bound holds
    assert both.size == (150, 200)


def test_a_phones_heic_photo_reads_upright_like_its_jpeg(tmp_path):
    """HEIC (an iPhone's default) through the optional pillow-heif, which the test extra installs:
    the picture comes out upright, as the same picture saved as a JPEG with that orientation does."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed (pip install "
                                      "'stylize[heif]'): HEIC photos cannot be read here")
    assert pillow_heif is not None
    from stylize.imageio import heif_support

    heif_support()  # registers the reader, as opening any image does
    picture = scene(64, 48)
    picture.paste((0, 0, 255), (0, 0, 16, 16))  # a blue corner, to see where it ends up
    exif = picture.getexif()
    exif[0x0112] = 6  # shot with the phone turned: shown rotated 90 degrees clockwise
    picture.save(tmp_path / "photo.heic", exif=exif.tobytes(), quality=95)
    picture.save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95)
    heic, jpeg = load_image(tmp_path / "photo.heic"), load_image(tmp_path / "photo.jpg")
    assert heic.size == jpeg.size == (64, 48)
    assert heic.rgb[0, :, 2, -3].tolist() == pytest.approx([0, 0, 1], abs=0.2)  # the blue corner, top right
    assert (heic.rgb - jpeg.rgb).abs().mean() < 0.05


@pytest.mark.parametrize("kind", ["heic", "avif"])
def test_a_heic_or_avif_file_that_cannot_be_read_says_what_to_install(tmp_path, monkeypatch, kind):
    """Without a reader for it (pillow-heif; a Pillow without AVIF), the message says what to do,
    not just "not an image"; a file with another ISO-media brand (a video) gets the plain message."""
    import stylize.imageio

    monkeypatch.setattr(stylize.imageio, "heif_support", lambda: None)
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i not in ("HEIF", "AVIF")])
    brand = {"heic": b"heicmif1heic", "avif": b"avif\0\0\0\0mif1avif"}[kind]
    path = tmp_path / f"photo.{kind}"
    path.write_bytes((8 + len(brand)).to_bytes(4, "big") + b"ftyp" + brand + b"\0" * 200)
    with pytest.raises(ImageError, match={"heic": "a HEIC/HEIF photo, which needs pillow-heif: pip install",
                                          "avif": "an AVIF image, which this Pillow cannot read"}[kind]):
        load_image(path)
    video = tmp_path / "clip.bin"  # an ISO media file of another brand: a video, whatever its name
    video.write_bytes(b"\0\0\0\x18ftypisom\0\0\0\0isomavc1" + b"\0" * 200)
    with pytest.raises(ImageError, match=r"a video, which stylize takes as frames: extract them \(ffmpeg -i clip.bin"):
        load_image(video)


def test_a_video_file_says_how_to_stylise_its_frames(tmp_path):
    (tmp_path / "clip.mkv").write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 200)  # Matroska's header
    (tmp_path / "notes.png").write_bytes(b"not a picture")
    with pytest.raises(ImageError, match="clip.mkv: a video, which stylize takes as frames"):
        load_image(tmp_path / "clip.mkv")
    with pytest.raises(ImageError, match="notes.png: not an image file that can be read"):
        load_image(tmp_path / "notes.png")
