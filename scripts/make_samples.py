"""Make the images in samples/: public-domain/CC0 photos from scikit-image, and a generated painting.

Usage::

    pip download --no-deps --only-binary=:all: scikit-image==0.26.0 -d /tmp/ski
    python scripts/make_samples.py /tmp/ski/scikit_image-0.26.0-*.whl

Photos (scikit-image's bundled data, see its skimage/data/_fetchers.py):
- chelsea.jpg: "Chelsea the cat", CC0 by the photographer (Stefan van der Walt).
- astronaut.jpg: Eileen Collins, NASA, public domain.
The painting, swirls.jpg, is drawn here from random brush strokes along a swirling flow field
(seeded, so the file is reproducible); it is the project's own work.
"""

from __future__ import annotations

import io
import math
import random
import sys
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
PHOTOS = {"chelsea.png": "chelsea.jpg", "astronaut.png": "astronaut.jpg"}
PALETTE = [(18, 42, 110), (32, 70, 160), (60, 110, 190), (110, 160, 220), (235, 200, 60),
           (250, 230, 120), (20, 30, 60), (200, 120, 40), (90, 140, 120)]


def export_photos(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member, name in PHOTOS.items():
            img = Image.open(io.BytesIO(archive.read(f"skimage/data/{member}"))).convert("RGB")
            img.thumbnail((512, 512), Image.Resampling.LANCZOS)
            img.save(SAMPLES / name, quality=92)


def flow_angle(x: float, y: float, w: int, h: int) -> float:
    """A field of a few vortices, like swirling sky."""
    angle = 0.0
    for cx, cy, spin in ((0.3, 0.35, 1.0), (0.72, 0.3, -1.0), (0.5, 0.8, 1.0)):
        dx, dy = x / w - cx, y / h - cy
        angle += spin * math.atan2(dy, dx) * math.exp(-(dx * dx + dy * dy) / 0.08)
    return angle + math.pi / 2 + 0.6 * math.sin(3 * x / w) + 0.4 * math.cos(5 * y / h)


def paint(size: tuple[int, int] = (640, 480), strokes: int = 9000, seed: int = 7) -> Image.Image:
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, PALETTE[1])
    draw = ImageDraw.Draw(img)
    for i in range(strokes):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        band = (y / h + 0.15 * math.sin(x / w * 6)) * len(PALETTE)
        base = PALETTE[int(band + rng.gauss(0, 1.2)) % len(PALETTE)]
        colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in base)
        width = max(2, int(rng.uniform(3, 9) * (1.0 - 0.6 * i / strokes)))
        points = [(x, y)]
        for _ in range(rng.randint(4, 10)):
            a = flow_angle(x, y, w, h)
            x, y = x + 4 * math.cos(a), y + 4 * math.sin(a)
            points.append((x, y))
        draw.line(points, fill=colour, width=width, joint="curve")
    return img.filter(ImageFilter.SMOOTH_MORE)


def main() -> None:
    SAMPLES.mkdir(exist_ok=True)
    if len(sys.argv) > 1:
        export_photos(Path(sys.argv[1]))
    paint().save(SAMPLES / "swirls.jpg", quality=90)
    print("wrote", sorted(p.name for p in SAMPLES.iterdir()))


if __name__ == "__main__":
    main()
