"""An iterative run whole and in tiles (stylize.tiledloss), side by side: seconds per iteration,
peak memory over the loaded process, and the final objective (the same, up to rounding).

    python benchmarks/tiles.py [--device cpu] [--size 1536] [--tiles 768,384] [--iterations 4] [--half]

Each run is one scale at --size (the costly last scale of a default run), in a child process of
its own, so that each peak is its own. In float32 by default: there the tiles give the whole
run's objective exactly, so the runs take the same steps; in bfloat16 (--half) the Gram matrices'
rounding differs, and early steps move apart. On the CPU the peak is resident memory (VmHWM) above the
process once the VGG and the images are loaded; on CUDA, torch's peak allocated memory.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import REPO, SHARED, device_name, peak_resident, run_child, setup_device

GIB = 2**30


def child(device_name_: str, size: int, tile: int, iterations: int, half: bool) -> None:
    """Runs in a child process: one scale at ``size`` whole (``tile`` 0) or in tiles; prints JSON."""
    from stylize.config import BackboneConfig, RunConfig
    from stylize.device import reuse_freed_memory
    from stylize.imageio import load_image
    from stylize.job import Iterative

    reuse_freed_memory()  # as the command line does
    content_path = SHARED / "content" / "tubingen.jpg"
    style_path = SHARED / "styles" / "starry_night.jpg"
    if not content_path.exists():
        content_path, style_path = REPO / "samples" / "chelsea.jpg", REPO / "samples" / "swirls.jpg"
    device = setup_device(device_name_)
    config = RunConfig(size=size, scales=1, iterations=(iterations,), tile=tile, half=half)
    job = Iterative(config, BackboneConfig(), device_name_)
    content, style = load_image(content_path), load_image(style_path)
    job.check(content, [style])
    base = peak_resident() if device.type == "cpu" else torch.cuda.memory_allocated(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    last = [time.perf_counter()]

    def on_progress(progress) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    result = job.run(content, [style], on_progress=on_progress)
    peak = peak_resident() if device.type == "cpu" else torch.cuda.max_memory_allocated(device)
    h, w = result.image.shape[-2:]
    steady = times[1:] or times  # the first iteration also computes the targets
    print(json.dumps({"per_iteration": sum(steady) / len(steady), "peak_extra": peak - base, "shape": [h, w],
                      "loss": result.losses["total"], "tile": job.tile_for((h, w))}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--tiles", default="768,384", help="tile sizes to compare with the whole run")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--half", action="store_true", help="bfloat16, as the default run on CPUs with AMX")
    parser.add_argument("--child-tile", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_tile is not None:
        child(args.device, args.size, args.child_tile, args.iterations, args.half)
        return
    print(f"torch {torch.__version__}; {device_name(setup_device(args.device))}; one scale at {args.size} px, "
          f"{args.iterations} iterations, {'bfloat16' if args.half else 'float32'}")
    common = ["--device", args.device, "--size", str(args.size), "--iterations", str(args.iterations)]
    common += ["--half"] if args.half else []
    whole = run_child(__file__, [*common, "--child-tile", "0"])
    h, w = whole["shape"]
    print(f"whole, {w}x{h}: {whole['per_iteration']:.2f} s an iteration, peak {whole['peak_extra'] / GIB:.2f} GiB "
          f"over the loaded process, final objective {whole['loss']:.5g}")
    for tile in (int(t) for t in args.tiles.split(",")):
        run = run_child(__file__, [*common, "--child-tile", str(tile)])
        print(f"tiles of {tile} px: {run['per_iteration']:.2f} s an iteration "
              f"({run['per_iteration'] / whole['per_iteration']:.2f}x the whole run's), peak "
              f"{run['peak_extra'] / GIB:.2f} GiB ({run['peak_extra'] / whole['peak_extra']:.2f}x), final objective "
              f"{run['loss']:.5g} ({run['loss'] / whole['loss'] - 1:+.2%})")


if __name__ == "__main__":
    main()
