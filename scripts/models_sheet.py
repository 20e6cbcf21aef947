"""The README's picture of the bundled models: each one on a sample photo, beside the iterative
result for the same painting.

    python scripts/models_sheet.py docs/models.jpg [--photo samples/chelsea.jpg] [--iterative DIR]

Row one: the photo, then every bundled model's output (one forward pass). Row two, with
--iterative: DIR/chelsea_iter_NAME.png, made by `stylize run PHOTO PAINTING --size 451` for
each model's painting (the paintings live in ../shared/data/styles, not in this repository).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from stylize.imageio import load_image, save_picture, to_pil
from stylize.modelfile import bundled_models, load_model
from stylize.sheet import grid, thumbnail
from stylize.transformer import stylize_image

SIDE = 320


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output", type=Path)
    parser.add_argument("--photo", type=Path, default=Path("samples/chelsea.jpg"))
    parser.add_argument("--iterative", type=Path, default=None)
    args = parser.parse_args()
    photo = load_image(args.photo).rgb
    cells = [(f"photo: {args.photo.name}", to_pil(photo), True)]
    for path in bundled_models():
        model = load_model(path)
        start = time.perf_counter()
        result = stylize_image(model.network, photo, torch.device("cpu"))
        cells.append((f"{path.stem} (model, {time.perf_counter() - start:.1f} s CPU)", to_pil(result), True))
    if args.iterative is not None:
        cells.append(("", None, False))
        for path in bundled_models():
            found = args.iterative / f"{args.photo.stem}_iter_{path.stem}.png"
            cells.append((f"{path.stem} (iterative, Gatys)", thumbnail(found, SIDE * 2), True))
    save_picture(grid(cells, columns=len(bundled_models()) + 1, side=SIDE), args.output, overwrite=True, quality=90)


if __name__ == "__main__":
    main()
