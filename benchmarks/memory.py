"""Peak memory of a default 1024 px iterative run and of a 6000x4000 tiled fast run, each in a
child process, printed next to the size of the image tensors themselves.

    python benchmarks/memory.py [--device cpu] [--iterations 200,70] [--model starry_night]

On the CPU the figure is the child's peak resident memory (VmHWM, its own: ru_maxrss would
start at the parent's) minus its peak once torch, the networks and the images are loaded; on
CUDA, torch's peak allocated memory.
L-BFGS's memory (optimize.LBFGS_HISTORY pairs of image-sized vectors, 20) is full after 20
iterations of a scale, so a shortened schedule with at least 21 iterations at full size measures
the same peak.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from batch import huge_child  # the tiled run, shared with batch.py
from common import REPO, SHARED, peak_resident, run_child, setup_device

GIB = 2**30


def iterative_child(device_name: str, iterations: str | None, reuse: bool) -> None:
    """Runs in a child process: a default iterative run at 1024 px; prints JSON."""
    from stylize.config import BackboneConfig, RunConfig
    from stylize.device import reuse_freed_memory
    from stylize.imageio import load_image
    from stylize.job import Iterative

    if reuse:
        reuse_freed_memory()  # as the command line does

    content_path = SHARED / "content" / "tubingen.jpg"
    style_path = SHARED / "styles" / "starry_night.jpg"
    if not content_path.exists():
        content_path, style_path = REPO / "samples" / "chelsea.jpg", REPO / "samples" / "swirls.jpg"
    config = RunConfig(size=1024, iterations=tuple(int(v) for v in iterations.split(",")) if iterations else None)
    device = setup_device(device_name)
    job = Iterative(config, BackboneConfig(), device_name)
    content, style = load_image(content_path), load_image(style_path)
    schedule = job.check(content, [style])
    base = peak_resident() if device.type == "cpu" else torch.cuda.memory_allocated(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = job.run(content, [style])
    seconds = time.perf_counter() - start
    peak = peak_resident() if device.type == "cpu" else torch.cuda.max_memory_allocated(device)
    h, w = result.image.shape[-2:]
    print(json.dumps({"seconds": seconds, "peak_extra": peak - base, "base": base, "shape": [h, w],
                      "schedule": [[list(hw), n] for hw, n in schedule],
                      "image_bytes": 3 * h * w * 4}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iterations", default=None, help="per scale, e.g. 3,55 [default: the default schedule]")
    parser.add_argument("--model", default="starry_night")
    parser.add_argument("--system-allocator", action="store_true",
                        help="leave glibc's malloc as it is (the command line sets it to reuse freed memory)")
    parser.add_argument("--child", choices=["iterative", "tiled"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "iterative":
        iterative_child(args.device, args.iterations, not args.system_allocator)
        return
    if args.child == "tiled":
        huge_child(args.model, args.device, 6000, 4000, not args.system_allocator)
        return
    print(f"torch {torch.__version__}; device {args.device}; "
          f"{'system allocator' if args.system_allocator else 'freed memory reused, as the command line does'}")
    common = ["--device", args.device] + (["--system-allocator"] if args.system_allocator else [])
    iterations = ["--iterations", args.iterations] if args.iterations else []
    it = run_child(__file__, ["--child", "iterative", *common, *iterations])
    h, w = it["shape"]
    print(f"iterative, {w}x{h} (schedule {it['schedule']}): {it['seconds']:.0f} s; peak memory over the loaded "
          f"process {it['peak_extra'] / GIB:.2f} GiB; the output image tensor itself {it['image_bytes'] / GIB:.3f} GiB "
          f"({it['peak_extra'] / it['image_bytes']:.0f}x); process with VGG and images loaded "
          f"{it['base'] / GIB:.2f} GiB")
    tiled = run_child(__file__, ["--child", "tiled", *common, "--model", args.model])
    print(f"fast, 6000x4000 tiled (tile {tiled['tile']}, {args.model}): {tiled['seconds']:.0f} s; peak memory over the "
          f"loaded process {tiled['peak_extra'] / GIB:.2f} GiB; the input tensor itself {tiled['input'] / GIB:.2f} GiB "
          f"(input + output {2 * tiled['input'] / GIB:.2f} GiB); one untiled pass would need about "
          f"{tiled['untiled_estimate'] / GIB:.2f} GiB")


if __name__ == "__main__":
    main()
