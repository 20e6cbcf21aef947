"""Image files in and out: tolerant reading, atomic no-clobber writing.

Images leave this module as float tensors ``[1,3,H,W]`` in [0,1] (alpha, when present, as
``[1,1,H,W]``) and come back the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from stylize import __version__
from stylize.atomic import atomic_write, check_writable
from stylize.color import rgb_to_yiq
from stylize.config import OutputConfig
from stylize.errors import ImageError, OutputError
from stylize.paths import file_problem

# Output formats by file suffix, and whether each can carry an alpha channel.
FORMATS: dict[str, tuple[str, bool]] = {
    ".png": ("PNG", True),
    ".jpg": ("JPEG", False),
    ".jpeg": ("JPEG", False),
    ".webp": ("WEBP", True),
    ".tif": ("TIFF", True),
    ".tiff": ("TIFF", True),
    ".gif": ("GIF", True),  # 256 colours (to_gif); transparency: a pixel is clear or not
}
# Pillow's names of the formats whose files can hold an animation (a TIFF's pages and an MPO's
# views are other pictures, not frames in time).
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")
# GIF holds 256 colours: one palette for every frame of an animation, by median cut over up to
# GIF_SAMPLE_FRAMES frames from across it, each reduced to at most GIF_SAMPLE_SIDE px, and each
# frame takes its nearest colours, undithered. Both keep an animation from shimmering: with a
# palette for each frame (as Pillow writes GIFs itself) the same colour moves between entries
# from frame to frame, and dithering draws dots that move with every small change of a frame.
# On 8 frames through a bundled model (benchmarks/gif.py) the GIF changed 1.04-1.06x as much
# from frame to frame as the lossless frames did, against 1.10-1.24x as Pillow writes it,
# 1.15-1.38x with Floyd-Steinberg's error diffusion and 1.05-1.45x with an ordered (Bayer)
# pattern (fixed to the pixels, it stands still while the picture pans); the price, bands in a
# smooth gradient, did not show in stylised pictures.
GIF_SAMPLE_FRAMES = 16
GIF_SAMPLE_SIDE = 256
QUALITY_FORMATS = ("JPEG", "WEBP")
# zlib's fastest setting for PNG outputs (as OpenCV writes them; PIL's default is 6). Saving a
# bundled model's 480x360 output took 59 ms at 6 and 16 ms at 1, for a file 8 % larger (an
# iterative one's: 21 and 17 ms, 3 % larger): at 6 saving took longer than the network's pass,
# and a folder through `stylize run --model` on the 2-core CPU ran 1.95x the images/s at 1, for
# 1.09x the bytes (benchmarks/batch.py). The pixels are the same either way.
PNG_COMPRESS_LEVEL = 1
DEFAULT_QUALITY = OutputConfig.quality
DEFAULT_MAX_PIXELS = OutputConfig.max_pixels
ORIENTATION_TAG = 0x0112
SOFTWARE_TAG = 0x0131
EXIF_IFD_TAG = 0x8769
USER_COMMENT_TAG = 0x9286  # in the Exif IFD; its text starts with an 8-byte character code
_ASCII_CODE = b"ASCII\0\0\0"
SOFTWARE = f"stylize {__version__}"  # the Software tag of a file that carries a recipe
# A JPEG keeps its EXIF in one marker segment of at most 64 KiB (Pillow refuses more).
JPEG_EXIF_MAX = 65_000
# What folders, patterns and training scans take as images. HEIC/HEIF (phones' photos: an
# iPhone's default) are read with the optional pillow-heif; AVIF with Pillow's own plugin (11.3+).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".avif", ".heic",
                            ".heif"})
# ISO media files say what they hold in their first box ("ftyp"): these brands are HEIF stills, AVIF.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}


@dataclass(frozen=True)
class Metadata:
    """What an output keeps of its photo's file: the colour profile and EXIF (upright)."""

    icc_profile: bytes | None = None  # only an RGB profile: the output is RGB
    exif: bytes | None = None  # orientation tag removed: the pixels are already upright

    def save_options(self, comment: str | None = None, fmt: str = "PNG") -> dict:
        """PIL's save options; ``comment`` (ASCII) goes into the EXIF's UserComment, where the
        ``fmt`` has room (see ``with_comment``)."""
        options: dict = {}
        if fmt == "GIF":  # no EXIF or colour profile there: the recipe goes into a GIF comment
            return {"comment": comment} if comment is not None else {}
        if self.icc_profile:
            options["icc_profile"] = self.icc_profile
        exif = self.exif if comment is None else with_comment(self.exif, comment, fmt)
        if exif:
            options["exif"] = exif
        return options


def with_comment(exif: bytes | None, comment: str, fmt: str) -> bytes | None:
    """``exif`` (a photo's, or none) with ``comment`` as its UserComment and stylize as its
    Software. A JPEG whose EXIF would outgrow its 64 KiB segment keeps the photo's alone."""
    merged = Image.Exif()
    if exif:
        merged.load(exif)
    merged[SOFTWARE_TAG] = SOFTWARE
    merged.get_ifd(EXIF_IFD_TAG)[USER_COMMENT_TAG] = _ASCII_CODE + comment.encode("ascii")
    data = merged.tobytes()
    return exif if fmt == "JPEG" and len(data) > JPEG_EXIF_MAX else data


def read_comment(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """The ASCII UserComment of an image file's EXIF (where stylize keeps its recipe), or None."""
    path = Path(path)
    # (A PNG whose EXIF follows its pixels is decoded to reach it: the --max-pixels check applies.)
    with reading(path), open_image(path, max_pixels) as img:
        if img.format == "GIF":
            comment = img.info.get("comment")
            return comment.decode("ascii", "replace") if isinstance(comment, bytes) else None
        comment = img.getexif().get_ifd(EXIF_IFD_TAG).get(USER_COMMENT_TAG)
    if not isinstance(comment, bytes) or not comment.startswith(_ASCII_CODE):
        return None
    return comment[len(_ASCII_CODE):].rstrip(b"\0").decode("ascii", "replace")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: RGB in [0,1], plus alpha when the file had transparency."""

    rgb: torch.Tensor  # [1,3,H,W] float32
    alpha: torch.Tensor | None  # [1,1,H,W] float32 or None
    path: Path
    metadata: "Metadata | None" = None
    reduced_from: tuple[int, int] | None = None  # (height, width) of the whole picture, when decoded smaller
    frames: int = 1  # an animation's frame count (stylize.animation reads them); this is the first

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.rgb.shape[-2], self.rgb.shape[-1]

    @property
    def full_size(self) -> tuple[int, int]:
        """(height, width) of the picture in the file, upright: what output sizes are computed
        from, so that a smaller decode gives the same output size."""
        return self.reduced_from or self.size


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, min_short_side: int | None = None,
               min_long_side: int | None = None) -> LoadedImage:
    """Read an image file, apply its EXIF orientation and convert any mode to RGB (+ alpha).

    ``min_short_side``, ``min_long_side``: a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size,
    where its sides keep at least these many pixels (libjpeg scales in the transform: a
    12-megapixel photo decoded for a 256 px training crop took 38 against 350 ms,
    benchmarks/RESULTS.md); ``full_size`` is then the whole picture's."""
    path = Path(path)
    with reading(path):
        with open_image(path, max_pixels) as img:
            frames = frame_count(img)
            whole = _upright_size(img)
            _draft(img, min_short_side, min_long_side)
            img.load()
            metadata = _metadata(img)  # before exif_transpose, which can drop the ICC profile
            img = ImageOps.exif_transpose(img)
            rgb, alpha = to_tensors(img)
    reduced = whole if tuple(rgb.shape[-2:]) != whole else None
    return LoadedImage(rgb=rgb, alpha=alpha, path=path, metadata=metadata, reduced_from=reduced, frames=frames)


def frame_count(img: Image.Image) -> int:
    """How many frames an opened animation has (1 for a still, and for a TIFF's pages)."""
    if img.format not in ANIMATED_FORMATS:
        return 1
    return int(getattr(img, "n_frames", 1)) - first_frame(img)


def first_frame(img: Image.Image) -> int:
    """The index of an opened animation's first frame: 1 in an APNG whose default image (for
    viewers without APNG) is not one of its frames, which Pillow counts as frame 0."""
    return 1 if getattr(img, "default_image", False) and getattr(img, "is_animated", False) else 0


def animation_suffix(path: Path) -> str | None:
    """``path``'s suffix (".gif", ".webp", ".png") where it is an animation in that format, else
    None; an unreadable file is None here (reading it says what is wrong)."""
    suffix = Path(path).suffix.lower()
    if FORMATS.get(suffix, ("", False))[0] not in ANIMATED_FORMATS:
        return None
    try:
        with _pillow_limit_off(), Image.open(path) as img:
            animated = bool(getattr(img, "is_animated", False)) and img.format in ANIMATED_FORMATS
    except Exception:  # noqa: BLE001 - any failure to read it is reported when it is loaded
        return None
    return suffix if animated else None


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Reading an image file: a missing, empty or unreadable one raises ImageError, one line
    that says what is wrong with it."""
    problem = file_problem(path, "an image file")
    if problem:
        raise ImageError(f"{path}: {problem}")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: {_unreadable(path)}") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:  # (IndexError: a GIF cut short)
        raise ImageError(f"{path}: the image is truncated or corrupt ({exc})") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode it; lower --max-pixels or free memory") from None


def _upright_size(img: Image.Image) -> tuple[int, int]:
    """(height, width) the file's picture has once its EXIF orientation is applied."""
    width, height = img.size
    turned = img.getexif().get(ORIENTATION_TAG) in (5, 6, 7, 8)  # the orientations that swap the sides
    return (width, height) if turned else (height, width)


def _draft(img: Image.Image, min_short_side: int | None, min_long_side: int | None) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale where its sides stay at least as asked
    (``draft`` keeps each side at least the size given; other formats ignore it)."""
    width, height = img.size
    need_w = need_h = min_short_side or 0
    if min_long_side is not None:
        scale = min_long_side / max(width, height)
        need_w, need_h = max(need_w, math.ceil(width * scale)), max(need_h, math.ceil(height * scale))
    if (need_w or need_h) and need_w < width and need_h < height:
        img.draft(None, (need_w, need_h))


def _unreadable(path: Path) -> str:
    """Why Pillow did not recognise the file, and what to do where something can be done."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        head = b""
    brands = {head[i:i + 4] for i in range(8, min(len(head), int.from_bytes(head[:4], "big")), 4)} \
        if head[4:8] == b"ftyp" else set()
    if brands & _AVIF_BRANDS:
        return "an AVIF image, which this Pillow cannot read: upgrade Pillow (11.3 or newer reads AVIF)"
    if brands & _HEIF_BRANDS:
        return ("a HEIC/HEIF photo, which needs pillow-heif: pip install pillow-heif (or pip install "
                "'stylize[heif]'), or convert it to JPEG")
    if brands or Path(path).suffix.lower() in _VIDEO_SUFFIXES:  # (another ISO media file is a video)
        return (f"a video, which stylize takes as frames: extract them (ffmpeg -i {Path(path).name} "
                "frames/%05d.png) and give the folder (with a painting, --init previous keeps the texture "
                "steady), or make it an animated GIF or WebP")
    return "not an image file that can be read (PNG, JPEG, WebP, TIFF, BMP, ...)"


@functools.cache
def heif_support() -> str | None:
    """The version of pillow-heif, once its HEIC/HEIF reader is registered with Pillow (on the
    first image opened, not on import); None where it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    return str(pillow_heif.__version__)


@contextmanager
def open_image(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """An image file opened, nothing decoded yet; more than ``max_pixels`` by its header raises
    ImageError (a decompression bomb, or more than the user allowed)."""
    heif_support()
    with _pillow_limit_off(), Image.open(path) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageError(f"{path}: {width}x{height} is {width * height:,} pixels, more than the limit of "
                             f"{max_pixels:,}; refusing to decode it (raise --max-pixels if it is genuine)")
        yield img


@contextmanager
def _pillow_limit_off() -> Iterator[None]:
    """Pillow's own bomb check fires at a fixed size with a message about Pillow; ours
    (``open_image``) names the limit and how to raise it, so Pillow's is off while we open a file."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _metadata(img: Image.Image) -> Metadata:
    icc = img.info.get("icc_profile")
    # The output is RGB: a CMYK or grey profile would misdescribe its pixels.
    if not icc or len(icc) < 20 or icc[16:20] != b"RGB ":
        icc = None
    exif = Image.Exif()
    exif.load(img.getexif().tobytes())  # a copy: exif_transpose still needs the orientation
    exif.pop(ORIENTATION_TAG, None)
    return Metadata(icc_profile=icc, exif=exif.tobytes() if len(exif) else None)


def to_tensors(img: Image.Image) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Convert a PIL image of any mode into RGB and optional alpha tensors in [0,1]."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _high_depth_gray(img)
        return gray.expand(1, 3, -1, -1).contiguous(), None
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if has_alpha else "RGB")
    channels = 4 if has_alpha else 3
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.height, img.width, channels)
    # One pass converts to float and out of PIL's interleaved layout, one divides in place: the
    # same values as converting, copying and dividing in three, 1.40-1.49x as fast (a 1080p
    # frame on one core: 6.0-6.3 against 8.4-9.4 ms; benchmarks/imageio_speed.py).
    tensor = torch.empty((1, channels, img.height, img.width))
    tensor[0].copy_(data.permute(2, 0, 1))
    tensor.div_(255.0)
    if has_alpha:
        return tensor[:, :3].contiguous(), tensor[:, 3:].contiguous()
    return tensor, None


def _high_depth_gray(img: Image.Image) -> torch.Tensor:
    """16-bit, 32-bit integer and float single-channel images as [1,1,H,W] in [0,1]."""
    if img.mode == "F":
        values = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.float32).clone()
        values = values.clamp(0.0, 1.0) if values.max() <= 1.0 else values / values.max()
    else:
        img = img.convert("I")  # 32-bit signed, native byte order
        values = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.int32).float()
        # 16-bit files decode into mode I; anything above 255 means the full 16-bit range.
        values = values / (65535.0 if values.max() > 255 else 255.0)
    return values.clamp(0.0, 1.0).view(1, 1, img.height, img.width)


def fit_long_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size with the given long side and the same aspect ratio (each side at least 1)."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_long_side_at_least(height: int, width: int, long_side: int, min_side: int) -> tuple[int, int]:
    """``fit_long_side``, enlarged where needed so that the short side is at least ``min_side``:
    a style image (a narrow strip, or shrunk by --style-scale at a coarse scale) must still give
    the network's deepest layer a pixel."""
    fitted = fit_long_side(height, width, long_side)
    if min(fitted) >= min_side:
        return fitted
    scale = min_side / min(height, width)
    return max(min_side, round(height * scale)), max(min_side, round(width * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B,C,H,W]`` to ``size`` (height, width), antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


def resize_cover(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B,C,H,W]`` to ``size`` keeping its proportions: the centre part of the target's
    shape is cut out and scaled, instead of stretching another shape. Shapes that agree within a
    pixel of rounding are resized whole (an earlier result of the same run, at another scale)."""
    height, width = image.shape[-2:]
    target_h, target_w = size
    if not same_proportions(height, width, target_h, target_w):
        # The largest window of the target's proportions that fits, centred.
        if height * target_w > width * target_h:  # taller than the target: trim top and bottom
            crop_h, crop_w = max(1, round(width * target_h / target_w)), width
        else:
            crop_h, crop_w = height, max(1, round(height * target_w / target_h))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        image = image[..., top:top + crop_h, left:left + crop_w]
    return resize(image, size)


def load_mask(path: Path, photo: LoadedImage, max_pixels: int = DEFAULT_MAX_PIXELS,
              invert: bool = False, allow_empty: bool = False) -> torch.Tensor:
    """A ``--mask`` for ``photo`` as ``[1,1,H,W]`` in [0,1]: its luminance (white: the style,
    black: the photo), times its alpha where it has one (transparent: the photo); ``invert``:
    one minus that (a subject's mask from a cut-out tool, to paint what is around it). One that
    keeps the photo everywhere is refused, unless ``allow_empty`` (a batch's frame whose matte
    is empty: see ``is_empty``). An animated mask goes with an animation of as many frames (this
    is its first frame's; stylize.animation.read_masks reads the others)."""
    mask = load_image(path, max_pixels)
    if mask.frames > 1 and mask.frames != photo.frames:  # one frame for all would be silently wrong
        what = f"an animation of {photo.frames} frames" if photo.frames > 1 else "a still photo"
        raise ImageError(f"{mask.path}: an animated mask of {mask.frames} frames for {what}; give one still mask "
                         "for every frame, or an animated one with a frame for each")
    return mask_of(mask, photo, invert, allow_empty or mask.frames > 1)


def mask_of(mask: LoadedImage, photo: LoadedImage, invert: bool = False, allow_empty: bool = False) -> torch.Tensor:
    """A decoded mask picture as ``load_mask`` makes it."""
    (height, width), (photo_h, photo_w) = mask.size, photo.full_size
    if not same_proportions(height, width, photo_h, photo_w):
        raise ImageError(f"{mask.path}: a {width}x{height} mask for a {photo_w}x{photo_h} photo; draw the mask at "
                         "the photo's proportions (any size)")
    luma = rgb_to_yiq(mask.rgb)[:, :1]  # Y, the luminance
    luma = luma if mask.alpha is None else luma * mask.alpha
    luma = 1 - luma if invert else luma
    if is_empty(luma) and not allow_empty:
        what = "white (and opaque) everywhere, so inverted" if invert else "black (or transparent) everywhere, so"
        raise ImageError(f"{mask.path}: the mask is {what} nothing would be stylised; paint white where the style "
                         "should go" + (" (black, with --invert-mask)" if invert else ""))
    return luma


def is_empty(mask: torch.Tensor) -> bool:
    """Whether a mask keeps the photo everywhere (black to within a grey level)."""
    return bool(mask.max() < 1 / 255)


def apply_mask(result: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``result`` where ``mask`` is 1, ``photo`` where it is 0, mixed between; the photo and the
    mask are resized to the result's size."""
    size = tuple(result.shape[-2:])
    return torch.lerp(resize(photo, size).to(result), result, resize(mask, size).to(result))


def same_proportions(height: int, width: int, other_h: int, other_w: int) -> bool:
    """Whether two shapes have the same proportions up to a pixel of rounding in either."""
    # |h/w - oh/ow| at most what one pixel more or less in h or w would make.
    return abs(height * other_w - width * other_h) <= max(height, width, other_h, other_w)


def check_output(path: Path, overwrite: bool) -> None:
    """Fail early, before any work, if ``path`` cannot be written as an image."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path / 'out.png'}")
    if path.suffix.lower() not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise OutputError(f"{path}: unknown image format '{path.suffix}'; use one of {known}")
    check_writable(path, overwrite)


def output_bytes(content: LoadedImage, size: tuple[int, int]) -> int:
    """An upper bound on the size of ``content``'s stylised file at ``size`` (height, width): its
    raw pixels (a PNG at zlib level 1 of noise stays within them plus a byte a row, a JPEG far
    below; an animation's, each frame's), the metadata it keeps, and 64 KiB for headers and
    stylize's recipe (about 1 KiB)."""
    height, width = size
    meta = content.metadata or Metadata()
    kept = len(meta.icc_profile or b"") + len(meta.exif or b"")
    return content.frames * (height * width * (3 if content.alpha is None else 4) + height) + kept + 2**16


def save_image(image: torch.Tensor, path: Path, alpha: torch.Tensor | None = None,
               overwrite: bool = False, quality: int = DEFAULT_QUALITY, metadata: Metadata | None = None,
               comment: str | None = None) -> None:
    """Write ``image`` ([1,3,H,W] in [0,1]) atomically; never replace a file without ``overwrite``.

    ``alpha`` is resized to the image if needed; ``metadata`` (colour profile, EXIF) is kept;
    ``comment``: an ASCII text for the EXIF's UserComment (stylize's recipe, ``read_comment``)."""
    path = Path(path)
    fmt, keeps_alpha = FORMATS.get(path.suffix.lower(), (None, False))  # save_picture rejects unknown ones
    if alpha is not None and keeps_alpha:
        alpha = resize(alpha, tuple(image.shape[-2:]))
    options = (metadata or Metadata()).save_options(comment, fmt or "")
    save_picture(to_pil(image, alpha if keeps_alpha else None), path, overwrite, quality, options)


def save_picture(picture: Image.Image, path: Path, overwrite: bool = False, quality: int = DEFAULT_QUALITY,
                 options: dict | None = None) -> None:
    """Write a PIL image atomically in the format its suffix names."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower(), (None, False))[0]
    if fmt is None:
        raise OutputError(f"{path}: unknown image format '{path.suffix}'")
    if fmt == "GIF":
        (picture,), clear = to_gif([picture])
        options = {**(options or {}), **({} if clear is None else {"transparency": clear})}
    options = {**(options or {}), **({"quality": quality} if fmt in QUALITY_FORMATS else {}),
               **({"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {})}
    atomic_write(path, lambda handle: picture.save(handle, format=fmt, **options), overwrite)


def save_result(image: torch.Tensor, content: LoadedImage, path: Path, overwrite: bool = False,
                quality: int = DEFAULT_QUALITY, comment: str | None = None) -> None:
    """Save a stylised ``content``: with the photo's alpha channel, colour profile and EXIF (and
    the ``comment``, see ``save_image``)."""
    save_image(image, path, content.alpha, overwrite, quality, content.metadata, comment)


def as_saved(image: torch.Tensor) -> torch.Tensor:
    """``image`` (in [0,1]) as an 8-bit lossless file keeps it and ``load_image`` reads it back:
    what a video's next frame goes on from, whether it was just made or a resumed run reads it."""
    return image.mul(255).round().div(255)


def to_pil(image: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    """Convert ``[1,3,H,W]`` (and optional ``[1,1,H,W]`` alpha) in [0,1] to a PIL image."""
    planes = image[0] if alpha is None else torch.cat([image[0], alpha[0]], dim=0)
    planes = planes.detach().float().cpu()
    # Scaled, rounded and clamped in place, then converted to bytes and interleaved for PIL in one
    # pass: the same bytes as clamping, scaling, rounding, converting and copying one after the
    # other, 1.30-1.43x as fast (a 1080p frame on one core: 14-18 against 18-25 ms;
    # benchmarks/imageio_speed.py).
    scaled = planes.mul(255).round_().clamp_(0, 255)
    pixels = torch.empty((planes.shape[1], planes.shape[2], planes.shape[0]), dtype=torch.uint8)
    pixels.copy_(scaled.permute(1, 2, 0))
    return Image.fromarray(pixels.numpy())  # RGB, or RGBA with the alpha plane


def to_gif(pictures: list[Image.Image]) -> tuple[list[Image.Image], int | None]:
    """``pictures`` (RGB or RGBA, one size) in one palette of 256 colours, undithered (see
    GIF_SAMPLE_FRAMES), and the palette index of the clear pixels (less than half opaque), or
    None when none is transparent."""
    clear = any(p.mode == "RGBA" for p in pictures)
    colours = 255 if clear else 256  # the last index is kept for the clear pixels
    samples = [p.convert("RGB") for p in pictures[::-(-len(pictures) // GIF_SAMPLE_FRAMES)]]
    for sample in samples:
        sample.thumbnail((GIF_SAMPLE_SIDE, GIF_SAMPLE_SIDE))
    sheet = Image.new("RGB", (samples[0].width, sum(s.height for s in samples)))
    for index, sample in enumerate(samples):
        sheet.paste(sample, (0, index * samples[0].height))
    palette = sheet.quantize(colours, method=Image.Quantize.MEDIANCUT)
    entries = palette.getpalette() or []
    if clear:  # the clear pixels' entry: a colour of its own (a writer told the palette maps by colour)
        used = {tuple(entries[i:i + 3]) for i in range(0, len(entries), 3)}
        entries += next([c, 0, 255 - c] for c in range(256) if (c, 0, 255 - c) not in used)
    frames = []
    for picture in pictures:
        frame = picture.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
        if clear:
            frame.putpalette(entries)
            if picture.mode == "RGBA":
                frame.paste(colours, mask=picture.getchannel("A").point(lambda a: 255 if a < 128 else 0))
        frames.append(frame)
    return frames, colours if clear else None

