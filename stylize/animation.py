"""Animated pictures (GIF, WebP, APNG): their frames read one at a time, and stylised frames
written back as one animation with the input's timing.

A frame is read as a viewer shows it at that moment (Pillow composes a GIF's or APNG's partial
updates onto what came before), so each can be stylised as a photo of its own; they are written
whole. A GIF's frames share one palette (``imageio.to_gif``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from stylize.atomic import atomic_write
from stylize.device import gigabytes, memory_budget
from stylize.errors import OutputError, ResourceError
from stylize.imageio import (ANIMATED_FORMATS, DEFAULT_QUALITY, FORMATS, PNG_COMPRESS_LEVEL, LoadedImage, Metadata,
                             animation_suffix, first_frame, frame_count, mask_of, open_image, reading, resize, to_gif,
                             to_pil, to_tensors)

# A frame shown for no time at all (some GIFs say 0 ms) is given what browsers give it.
DEFAULT_DURATION_MS = 100


@dataclass(frozen=True)
class FrameProgress:
    """How far an animation's frames are: ``done`` of ``total`` made."""

    done: int
    total: int


@dataclass(frozen=True)
class AnimationFrame:
    """One frame of an animation, and how long it shows."""

    image: LoadedImage
    duration: float  # milliseconds


def read_frames(path: Path, max_pixels: int) -> Iterator[AnimationFrame]:
    """Each frame of the animation at ``path``, composed, in order (one decoded at a time)."""
    path = Path(path)
    with reading(path), open_image(path, max_pixels) as img:
        skip = first_frame(img)
        for index in range(skip, skip + frame_count(img)):
            img.seek(index)
            img.load()  # (a WebP frame's duration is known once it is decoded)
            rgb, alpha = to_tensors(img)
            yield AnimationFrame(LoadedImage(rgb=rgb, alpha=alpha, path=path), float(img.info.get("duration") or 0))


def read_masks(path: Path, photo: LoadedImage, max_pixels: int, invert: bool = False) -> Iterator[torch.Tensor]:
    """Each frame of an animated ``--mask`` as ``imageio.load_mask`` makes it (one may be empty,
    a subject out of view: that frame is the photo)."""
    for frame in read_frames(path, max_pixels):
        yield mask_of(frame.image, photo, invert, allow_empty=True)


def frame_masks(mask: torch.Tensor | None, animated: tuple[Path, bool] | None, photo: LoadedImage,
                max_pixels: int) -> Iterator[torch.Tensor | None]:
    """The mask of each frame of the animation ``photo``: an animated mask's own (``animated``: its
    file and --invert-mask, see ``animated_mask``), else ``mask`` (or None) for every frame."""
    return itertools.repeat(mask) if animated is None else read_masks(animated[0], photo, max_pixels, animated[1])


def animated_mask(mask: Path | None, invert: bool, photo: LoadedImage) -> tuple[Path, bool] | None:
    """(file, --invert-mask) where ``mask`` is an animation that goes with the animation ``photo``
    (``imageio.load_mask`` has checked their frames), else None."""
    if mask is None or photo.frames == 1 or animation_suffix(Path(mask)) is None:
        return None
    return Path(mask), invert


def _read_loop(path: Path, max_pixels: int) -> int | None:
    """How many times the animation repeats (0: for ever); None where it says nothing (a GIF
    without a loop count plays once)."""
    with reading(path), open_image(path, max_pixels) as img:
        loop = img.info.get("loop")
    return None if loop is None else int(loop)


def animated_format(output: Path, why: str = "") -> str:
    """The format (Pillow's name) of ``output``, which is to hold an animation; raise where it
    holds one picture, saying ``why`` first."""
    fmt = FORMATS.get(Path(output).suffix.lower(), ("", False))[0]
    if fmt not in ANIMATED_FORMATS:
        raise OutputError(f"{output}: {why + ' ' if why else ''}{fmt or 'this format'} holds one picture, not an "
                          "animation; name the output .gif, .webp or .png (an animated PNG)")
    return fmt


def check_animation(content: LoadedImage, output: Path, size: tuple[int, int]) -> None:
    """Raise, before any work, when ``output``'s format cannot hold ``content``'s frames, or when
    its stylised frames at ``size`` (height, width), held until they are written, would not fit in
    memory."""
    animated_format(output, f"{content.path.name} is an animation of {content.frames} frames and")
    height, width = size
    need = content.frames * height * width * 4
    budget = memory_budget(torch.device("cpu"))
    if budget is not None and need > budget // 2:
        raise ResourceError(f"{content.path}: {content.frames} frames of {width}x{height} need about "
                            f"{gigabytes(need)} held until the animation is written, more than half the "
                            f"{gigabytes(budget)} of free memory; lower --size")


class AnimationWriter:
    """Collects stylised frames (as 8-bit pictures: a quarter of their float size), then writes
    them as one animation, atomically."""

    def __init__(self) -> None:
        self.pictures: list[Image.Image] = []
        self.durations: list[float] = []

    def add(self, image: torch.Tensor, alpha: torch.Tensor | None, duration: float) -> None:
        """A stylised frame (``[1,3,H,W]`` in [0,1], with the frame's alpha at any size)."""
        if alpha is not None:
            alpha = resize(alpha, tuple(image.shape[-2:]))
        self.pictures.append(to_pil(image, alpha))
        self.durations.append(duration if duration > 0 else DEFAULT_DURATION_MS)

    def write(self, path: Path, source: LoadedImage, max_pixels: int, overwrite: bool = False,
              quality: int = DEFAULT_QUALITY, comment: str | None = None) -> None:
        """Write the frames to ``path`` as an animation of its format (GIF, WebP or APNG), repeating
        as the animation ``source`` does, with its metadata (colour profile, EXIF) and ``comment``."""
        path = Path(path)
        loop = _read_loop(source.path, max_pixels)
        fmt = animated_format(path)
        pictures = self.pictures
        if len({p.mode for p in pictures}) > 1:  # some frames clear in places, some not
            pictures = [p.convert("RGBA") for p in pictures]
        options = (source.metadata or Metadata()).save_options(comment, fmt)
        if fmt == "GIF":
            pictures, clear = to_gif(pictures)
            # Named, the palette is the file's one table (else Pillow gives each later frame a copy).
            options["palette"] = pictures[0].getpalette()
            if clear is not None:  # a frame's clear pixels show what is behind, not the last frame
                options.update(transparency=clear, disposal=2)
            if loop is not None:
                options["loop"] = loop
        else:
            options["loop"] = 1 if loop is None else loop
            options.update({"quality": quality} if fmt == "WEBP" else {"compress_level": PNG_COMPRESS_LEVEL})
        first, *rest = pictures
        durations = [round(d) for d in self.durations]
        atomic_write(path, lambda handle: first.save(handle, format=fmt, save_all=True, append_images=rest,
                                                     duration=durations, **options), overwrite)
