"""Batches with a trained network: throughput per --batch-size, and the memory of a tiled huge image.

    python benchmarks/batch.py [--device cuda] [--model NAME_OR_PATH] [--huge 6000x4000]

1. A folder of 32 photos of one size (512x384: ../shared/data/photos cropped, or generated
   scenes without ../shared) through `run_batch`, the code behind `stylize run DIR --model`,
   at --batch-size 1 and larger: images per second, each measured in this run; then, alternately,
   as stylize runs, with the results written in the batch's own thread (no background writer),
   and with PNG at PIL's default zlib level (images/s, and the outputs' bytes).
2. A 6000x4000 photo through the tiled path in a child process: its peak resident memory next
   to the estimate for one untiled pass (what auto-tiling avoids), and the time taken.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from PIL import Image, ImageOps

import stylize.batchrun
import stylize.imageio
from common import SHARED, peak_resident
from stylize.batch import expand, pair, plan
from stylize.batchrun import Status, run_batch
from stylize.config import OutputConfig, Pairing
from stylize.job import Fast
from stylize.modelfile import bundled_models, save_model
from stylize.tiling import estimate_bytes
from stylize.transformer import CLASSIC, TransformerNet

PHOTOS = SHARED / "photos"
SIZE = (512, 384)


def make_photos(folder: Path, count: int) -> None:
    sources = sorted(PHOTOS.glob("*.jpg"))[:count] if PHOTOS.is_dir() else []
    for i in range(count):
        if sources:
            with Image.open(sources[i % len(sources)]) as img:
                picture = ImageOps.fit(img.convert("RGB"), SIZE)
        else:
            picture = Image.effect_mandelbrot(SIZE, (-2 + i * 0.01, -1.2, 1, 1.2), 100).convert("RGB")
        picture.save(folder / f"photo{i:02d}.jpg", quality=92)


def model_path(name: str | None, folder: Path) -> Path | str:
    if name:
        return name
    if bundled_models():
        return bundled_models()[0]
    torch.manual_seed(0)  # speed does not depend on the weights
    path = folder / "classic.pt"
    save_model(path, TransformerNet(CLASSIC), {"style_name": "random"})
    return path


def throughput(model: Path | str, device: str, photos: Path, batch_size: int, out: Path) -> float:
    stylizer = Fast(model, device)
    jobs = plan(pair(expand([photos], False, "content"), [()], Pairing.product), out, "{content}.{ext}", "png", "m")
    start = time.perf_counter()
    summary = run_batch(jobs, stylizer, OutputConfig(batch_size=batch_size, overwrite=True))
    seconds = time.perf_counter() - start
    assert summary.count(Status.done) == len(jobs), "every photo must be done"
    return len(jobs) / seconds


def huge_child(model: str, device: str, width: int, height: int, reuse: bool = True) -> None:
    """Runs in a child process: one huge image through the tiled path; prints JSON."""
    from stylize.device import reuse_freed_memory

    if reuse:
        reuse_freed_memory()  # as the command line does
    stylizer = Fast(model, device, tile=1024)  # as auto-tiling picks where memory is short
    image = torch.rand(1, 3, height, width)
    base = peak_resident()
    start = time.perf_counter()
    tile = stylizer.tile_for(height, width)
    result = stylizer.run([image])[0]
    seconds = time.perf_counter() - start
    peak = peak_resident()
    print(json.dumps({"tile": tile, "seconds": seconds, "peak_extra": peak - base, "input": image.nbytes,
                      "shape": list(result.shape),
                      "untiled_estimate": estimate_bytes(stylizer.model.network, height, width)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--huge", default="6000x4000")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.huge.split("x"))
    if args.child:
        huge_child(args.model, args.device, width, height)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = folder / "photos"
        photos.mkdir()
        make_photos(photos, 32)
        model = model_path(args.model, folder)
        print(f"model {model}; 32 photos {SIZE[0]}x{SIZE[1]} from {'../shared' if PHOTOS.is_dir() else 'generated'}; "
              f"device {Fast(model, args.device).device}; torch threads {torch.get_num_threads()}")
        throughput(model, args.device, photos, 1, folder / "warm")  # warm-up (allocator, kernels)
        rates = {b: throughput(model, args.device, photos, b, folder / f"out{b}") for b in (1, 2, 4, 8)}
        best = max(rates, key=rates.get)
        for b, rate in rates.items():
            print(f"--batch-size {b}: {rate:.2f} images/s  ({rate / rates[1]:.2f} x batch size 1)")
        print(f"best: --batch-size {best}, {rates[best] / rates[1]:.2f} x the images/s of --batch-size 1")
        # At --batch-size 1, alternately: stylize as it is; its results written in the batch's own
        # thread (as before the background writer); and PNG at PIL's default zlib level 6.
        threads = stylize.batchrun.io_threads()
        variants = {f"as stylize runs ({threads} reader and writer thread{'s' * (threads > 1)} each, zlib level "
                    f"{stylize.imageio.PNG_COMPRESS_LEVEL})": (threads, stylize.imageio.PNG_COMPRESS_LEVEL),
                    "written in the batch's thread": (0, stylize.imageio.PNG_COMPRESS_LEVEL),
                    "PNG at zlib level 6 (PIL's default)": (threads, 6)}
        results: dict[str, list[tuple[float, int]]] = {label: [] for label in variants}
        for round_ in range(2):
            for n, (label, (writers, level)) in enumerate(variants.items()):
                with mock.patch.object(stylize.batchrun, "io_threads", lambda writers=writers: writers), \
                        mock.patch.object(stylize.imageio, "PNG_COMPRESS_LEVEL", level):
                    out = folder / f"variant{n}-{round_}"
                    results[label].append((throughput(model, args.device, photos, 1, out),
                                           sum(f.stat().st_size for f in out.iterdir())))
        base = max(r for r, _ in next(iter(results.values())))
        for label, runs in results.items():
            rate, size = max(r for r, _ in runs), runs[0][1]
            print(f"--batch-size 1, {label}: {rate:.2f} images/s ({rate / base:.2f} x), outputs {size / 2**20:.1f} MiB")
        child = subprocess.run([sys.executable, __file__, "--child", "--model", str(model), "--device", args.device,
                                "--huge", args.huge], capture_output=True, text=True, check=True)
        huge = json.loads(child.stdout.strip().splitlines()[-1])
        gib = 2**30
        print(f"{width}x{height} tiled (tile {huge['tile']}): {huge['seconds']:.1f} s, peak extra memory "
              f"{huge['peak_extra'] / gib:.2f} GiB (input alone {huge['input'] / gib:.2f} GiB) vs untiled estimate "
              f"{huge['untiled_estimate'] / gib:.2f} GiB: {huge['peak_extra'] / huge['untiled_estimate']:.2f} x")


if __name__ == "__main__":
    main()
