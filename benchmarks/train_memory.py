"""Peak memory of training steps next to `stylize.train.estimate_step_memory`, the estimate by
which `stylize train` refuses a step that would not fit (--batch-size, --image-size, network).

    python benchmarks/train_memory.py [--device cpu] [--steps 2]

Each configuration runs in a child process: `prepare_training` (VGG, network, style targets
loaded), then a few steps without loader processes. On the CPU the figure is the child's peak
resident memory (VmHWM) over its peak once prepared, with freed memory reused as the command
line sets it; on CUDA, torch's peak allocated memory over what was allocated once prepared. The
estimate is printed without its fixed part (weights and the like, features.FIXED_BYTES), which
the loaded process already holds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from common import peak_resident, run_child, setup_device
from train import photos_and_style  # ../shared's photos, or generated scenes

# (batch, crop size, width, blocks, shuffle): the default, larger crops and batches, the
# bundled models' layout, and a wide network.
CONFIGS = [(4, 128, 32, 5, 1), (4, 256, 32, 5, 1), (8, 256, 32, 5, 1), (4, 384, 32, 5, 1),
           (4, 256, 16, 3, 2), (8, 256, 16, 3, 2), (4, 256, 32, 5, 2), (4, 256, 64, 5, 1)]
GIB = 2**30


def child(device_name: str, spec: list[int], half: bool, steps: int, folder: Path) -> dict:
    """Runs in a child process: one configuration's peak and its estimate."""
    from stylize.config import BackboneConfig, TrainConfig
    from stylize.device import reuse_freed_memory
    from stylize.features import FIXED_BYTES
    from stylize.train import estimate_step_memory, prepare_training, train
    from stylize.transformer import TransformerConfig

    reuse_freed_memory()  # as the command line does
    device = setup_device(device_name)
    batch, size, width, blocks, shuffle = spec
    photos, style = photos_and_style(folder)
    config = TrainConfig(image_size=size, batch_size=batch, steps=steps, checkpoint_every=10**6, half=half, workers=0)
    network = TransformerConfig(width=width, blocks=blocks, shuffle=shuffle)
    job = prepare_training(style, photos, folder / "m.pt", config, network, BackboneConfig(), device_name,
                           overwrite=True)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else peak_resident()
    train(job)
    peak = torch.cuda.max_memory_allocated(device) if cuda else peak_resident()
    estimate = estimate_step_memory(config, network, job.extractor.arch) - FIXED_BYTES
    return {"measured": peak - base, "estimate": estimate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--half", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.device, [int(v) for v in args.child.split(",")], args.half, args.steps,
                               args.folder)))
        return
    device = setup_device(args.device)
    print(f"torch {torch.__version__}; device {device}; {args.steps} steps; peak over the prepared process "
          f"against the estimate (without its fixed part), GiB")
    with tempfile.TemporaryDirectory() as tmp:
        photos_and_style(Path(tmp))  # generated once here where ../shared is absent
        for spec in CONFIGS:
            row = []
            for half in (False, True):
                out = run_child(__file__, ["--device", args.device, "--steps", str(args.steps), "--folder", tmp,
                                           "--child", ",".join(map(str, spec))] + ["--half"] * half)
                row.append(f"{'bfloat16/float16' if half else 'float32'} {out['measured'] / GIB:5.2f} "
                           f"(estimate {out['estimate'] / GIB:5.2f}, {out['estimate'] / out['measured']:.2f}x)")
            batch, size, width, blocks, shuffle = spec
            print(f"{batch} x {size} px, width {width}, {blocks} blocks, shuffle {shuffle}: " + "; ".join(row))


if __name__ == "__main__":
    main()
