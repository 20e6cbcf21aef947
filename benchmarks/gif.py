"""GIF output of an animation: how much its dithering adds to the change from frame to frame,
side by side on the same stylised frames.

    python benchmarks/gif.py [--size 320] [--frames 8] [--model starry_night]

Two clips are made here from a shared photo, each frame with its own sensor noise (sigma
3/255): a still camera and a pan of 3 px a frame. Each goes through a bundled model once; its
lossless frames are then written as a GIF three ways: Pillow's own (a palette for each frame),
one palette with Floyd-Steinberg error diffusion, and one palette undithered, as stylize writes
it (imageio.to_gif). Printed for each: the mean
absolute change from one frame to the next (with the camera's pan taken out), as a ratio to the
lossless frames' own, and the mean absolute error against the lossless frames (0-255 levels).
Reads ../shared/data (STYLIZE_SHARED to point elsewhere)."""

from __future__ import annotations

import argparse
import io
import statistics

import torch
from PIL import Image, ImageSequence

from common import SHARED
from stylize import imageio
from stylize.imageio import fit_long_side, load_image, resize, to_pil
from stylize.job import Fast

PAN = 3


def clip(photo: torch.Tensor, size: int, frames: int, pan: int) -> list[torch.Tensor]:
    height, width = fit_long_side(*photo.shape[-2:], size)
    big = resize(photo, fit_long_side(*photo.shape[-2:], int(size * 1.25)))
    generator = torch.Generator().manual_seed(0)
    views = [big[..., :height, pan * t:pan * t + width] for t in range(frames)]
    return [(v + torch.randn(v.shape, generator=generator) * 3 / 255).clamp(0, 1) for v in views]


def levels(picture: Image.Image) -> torch.Tensor:
    return torch.frombuffer(bytearray(picture.convert("RGB").tobytes()), dtype=torch.uint8).float()\
        .view(picture.height, picture.width, 3)


def change(frames: list[torch.Tensor], pan: int) -> float:
    """Mean |frame t - frame t-1 moved with the camera| over the pixels both show, in levels."""
    return statistics.mean(float((b[:, :b.shape[1] - pan] - a[:, pan:]).abs().mean())
                           for a, b in zip(frames, frames[1:]))


def pillows_own(pictures: list[Image.Image]) -> list[Image.Image]:
    """A GIF as Pillow writes RGB frames by itself, read back."""
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=80)
    with Image.open(buffer) as img:
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(img)]


def one_palette(pictures: list[Image.Image], dither: Image.Dither) -> list[Image.Image]:
    """One palette (stylize's), dithered by Pillow's ``dither``."""
    palette = imageio.to_gif(pictures)[0][0]
    return [p.quantize(palette=palette, dither=dither) for p in pictures]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--model", default="starry_night")
    args = parser.parse_args()
    photo = load_image(SHARED / "content" / "tubingen.jpg").rgb
    network = Fast(args.model, "cpu")
    print(f"{args.model} over {args.frames} frames of tubingen at {args.size} px; change from frame to frame "
          "(ratio to the lossless frames') and error against them, in levels of 255")
    for name, pan in (("still camera", 0), (f"pan {PAN} px a frame", PAN)):
        pictures = [to_pil(network.run([frame])[0]) for frame in clip(photo, args.size, args.frames, pan)]
        lossless = [levels(p) for p in pictures]
        base = change(lossless, pan)
        print(f"{name}: lossless frames {base:.2f}")
        for label, made in (("Pillow's own GIF", pillows_own(pictures)),
                            ("one palette, Floyd-Steinberg", one_palette(pictures, Image.Dither.FLOYDSTEINBERG)),
                            ("one palette, undithered (stylize)", imageio.to_gif(pictures)[0])):
            frames = [levels(m) for m in made]
            error = statistics.mean(float((f - g).abs().mean()) for f, g in zip(frames, lossless))
            print(f"  {label:<34} {change(frames, pan):6.2f} ({change(frames, pan) / base:.2f}x)  error {error:.2f}")


if __name__ == "__main__":
    main()
