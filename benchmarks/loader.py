"""Photos decoded at the scale they are needed at: each JPEG decoded whole against at the smallest
scale that serves (libjpeg's 1/2, 1/4, 1/8), side by side in one run.

    python benchmarks/loader.py [--image-size 256] [--batch-size 4] [--repeats 7]

1. Training: one loader worker's batch of crops.
2. `stylize run PHOTO --model M --size N`: a photo read and scaled to the network's input
   (`Fast.load` then `Fast.input`) at --size 1024 and 512, as a batch's reader thread does.

Photos: generated 4032x3024 JPEGs (a phone's 12 megapixels: 1/4 scale fits a 256 px crop), the
shared training photos (short side 384: a 256 px crop, whose photo is scaled to a short side of up
to 384, leaves nothing to gain) and, for the bundled models' 128 px crops, the same photos at
1/2. One thread, as one DataLoader worker runs it.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch
from PIL import Image

from common import REPO, SHARED, alternate
from stylize.dataset import MAX_CROP_SCALE, StepBatches, crop_generator, random_crop
from stylize.imageio import load_image
from stylize.job import Fast

CPU = torch.device("cpu")


def whole_decode_batch(paths: list[Path], image_size: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """StepBatches' item as it was before: every photo decoded at full size, then cropped."""
    crops = []
    for j in range(batch_size):
        sample = step * batch_size + j
        crops.append(random_crop(load_image(paths[sample % len(paths)]).rgb, image_size, crop_generator(seed, sample)))
    return torch.cat(crops)


def phone_photos(folder: Path, count: int) -> list[Path]:
    source = Image.open(REPO / "samples" / "astronaut.jpg").convert("RGB")
    paths = []
    for i in range(count):
        path = folder / f"phone{i}.jpg"
        source.rotate(7 * i).resize((4032, 3024), Image.BICUBIC).save(path, quality=92)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shared = sorted((SHARED / "photos").glob("*.jpg"))[:16]
    with tempfile.TemporaryDirectory() as tmp:
        sets = [("4032x3024 JPEGs", phone_photos(Path(tmp), args.batch_size), args.image_size)]
        if shared:
            sets += [("shared photos", shared, args.image_size), ("shared photos", shared, args.image_size // 2)]
        print(f"one thread; a batch of {args.batch_size} crops; medians of {args.repeats} taken in turn")
        for label, paths, size in sets:
            batches = StepBatches(paths, size, args.batch_size, seed=0, steps=args.repeats + 1)
            step = iter(range(10**6))
            times = alternate({"whole": lambda: whole_decode_batch(paths, size, args.batch_size, next(step), 0),
                               "reduced": lambda: batches[next(step) % len(batches)]}, CPU, args.repeats)
            with Image.open(paths[0]) as img:
                img.draft(None, (math.ceil(size * MAX_CROP_SCALE),) * 2)
                decoded = "x".join(map(str, img.size))
            print(f"   {label}, {size} px crops: whole {times['whole'] * 1000:7.1f} ms   reduced (decoded at "
                  f"{decoded}) {times['reduced'] * 1000:7.1f} ms   {times['whole'] / times['reduced']:.2f}x")
        photo = sets[0][1][0]
        for size in (1024, 512):
            fast = Fast("starry_night", "cpu", size=size)
            times = alternate({"whole": lambda: fast.input(load_image(photo)),
                               "reduced": lambda: fast.input(fast.load(photo))}, CPU, args.repeats)
            decoded = "x".join(map(str, reversed(fast.load(photo).size)))
            print(f"   a 4032x3024 JPEG for --model --size {size}: whole {times['whole'] * 1000:7.1f} ms   reduced "
                  f"(decoded at {decoded}) {times['reduced'] * 1000:7.1f} ms   {times['whole'] / times['reduced']:.2f}x")


if __name__ == "__main__":
    main()
