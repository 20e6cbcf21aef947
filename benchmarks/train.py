"""Training throughput: `stylize train`'s loop against a straightforward reference loop.

    python benchmarks/train.py [--device cuda] [--steps 6] [--rounds 1] [--image-size 256] [--batch-size 4]
                               [--content-layers L] [--style-layers L]

Both train the same network (the classic 32-64-128 / 5 blocks unless --width/--blocks/--shuffle
say otherwise) on the same photos (../shared/data/photos, or generated scenes), same crop size,
batch, style image, loss (layers, weights, relative errors) and Adam, measured in one run:

- reference: the pytorch/examples fast_neural_style recipe, written plainly (recipe.py): a
  DataLoader that decodes, resizes and crops each photo every step; the network's layers as the
  recipe runs them (nearest-neighbour upsampling to full size before a convolution, where
  stylize's network upsamples bilinearly at the input's resolution; the 9x9 output convolution
  as it is; the same parameters as stylize's network, and the same function as stylize's
  computation of the recipe's layers, checked at the start); the
  whole VGG run on the photos and on the output (contiguous layout); Gram matrices and their
  gradients by autograd. (Like the recipe, it computes the style targets once.)
- reference + reused memory: the same loop with the C allocator set up as the command line
  does (stylize.device.reuse_freed_memory), to show what that part is worth on its own.
- stylize: `stylize.train.train` itself (the code behind `stylize train`), with the allocator
  set up as the command line does, in its default precision (bfloat16 mixed precision where
  that is native: CPUs with AVX512-BF16 or AMX) unless --half / --no-half say otherwise.
  The reference stays in float32, as the recipe runs. Twice: with the reference's objective
  (`--shift-weight 0`: the ratio the aim is about), and as `stylize train` runs by default,
  whose shift-consistency term also stylises each step's crops shifted by 1-3 px.
- on a GPU, stylize once more with its losses read back every step, as it did before its
  progress reports were limited to ten a second (each read waits for the device).

Each runs in a child process of its own (the allocator setting is process-wide), in turn,
--rounds times. Prints images/s of each after a warm-up step (for `stylize train` on CUDA also
after its step's CUDA graph is recorded), and the ratios (aim: >= 1.5).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from common import REPO, SHARED, device_name, run_child, sync
from recipe import PlainTransformer, PlainVGG, check_same_function, gram
from stylize.config import BackboneConfig, TrainConfig, format_layer_weights, parse_layer_weights
from stylize.cudagraph import WARM_UP
from stylize.dataset import scan_photos, style_image
from stylize.device import resolve_device, resolve_half, reuse_freed_memory
from stylize.losses import content_layer_weights, relative_error, style_layer_weights, tv_loss
from stylize.train import prepare_training, train
from stylize.transformer import TransformerConfig, TransformerNet


class Photos(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths = paths
        self.transform = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                                             transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB"))


def reference(photos: list[Path], style: Path, config: TrainConfig, network: TransformerConfig,
              device: torch.device, steps: int, workers: int = 0) -> float:
    """Images/s of ``steps`` steps after a warm-up step. ``workers``: the recipe's DataLoader
    decodes in the training process (0); launches.py counts the step alone (1)."""
    loss = config.loss
    content_w, style_w = content_layer_weights(loss), style_layer_weights(loss)
    vgg = PlainVGG(list(dict.fromkeys([*content_w, *style_w]))).to(device)
    torch.manual_seed(config.seed)
    net = TransformerNet(dataclasses.replace(network, upsample="nearest")).to(device).train()  # as the recipe's
    check_same_function(net)
    net = PlainTransformer(net)
    optimizer = torch.optim.Adam(net.parameters(), config.learning_rate)
    with torch.no_grad():
        style_feats = vgg(style_image(style, config.style_size or config.image_size).to(device))
        gram_style = {n: gram(style_feats[n]) for n in style_w}
    loader = torch.utils.data.DataLoader(Photos(photos, config.image_size), batch_size=config.batch_size, shuffle=True,
                                         num_workers=workers)
    done, start = 0, 0.0
    while done <= steps:
        for x in loader:
            if done == 1:  # after a warm-up step
                sync(device)
                start = time.perf_counter()
            x = x.to(device)
            optimizer.zero_grad()
            y = net(x)
            features_y, features_x = vgg(y), vgg(x)
            content = sum(w * relative_error(features_y[n], features_x[n]) for n, w in content_w.items())
            style_loss = sum(w * relative_error(gram(features_y[n]), gram_style[n]) for n, w in style_w.items())
            total = loss.content_weight * content + loss.style_weight * style_loss + loss.tv_weight * tv_loss(y)
            total.backward()
            optimizer.step()
            done += 1
            if done > steps:
                break
    sync(device)
    return steps * config.batch_size / (time.perf_counter() - start)


def ours(photos_dir: Path, style: Path, config: TrainConfig, network: TransformerConfig, device: str,
         steps: int, folder: Path, report_every: float | None = None) -> float:
    """Images/s of `stylize train` after its warm-up: the first step, and on CUDA the eager steps
    before the step's CUDA graph and the step that records it. Measured between progress reports
    (on a GPU at most ten a second), from the first one after the warm-up to the last step."""
    warm_up = 1 + (WARM_UP if resolve_device(device).type == "cuda" and config.cuda_graph else 0)
    job = prepare_training(style, photos_dir, folder / "m.pt",
                           TrainConfig(**{**config.__dict__, "steps": steps + warm_up}),
                           network, BackboneConfig(), device, overwrite=True)
    reports: list[tuple[int, float]] = []
    train(job, on_progress=lambda p: reports.append((p.step, p.elapsed)), report_every=report_every)
    (last, end), earlier = reports[-1], reports[:-1]  # the first step and the last always report
    first, start = next((r for r in earlier if r[0] >= warm_up), earlier[-1])
    return (last - first) * config.batch_size / (end - start)


CONTENDERS = {"reference": "reference loop (pytorch/examples recipe)",
              "reference-reuse": "reference loop + reused memory",
              "stylize-same-loss": "stylize train --shift-weight 0",
              "stylize": "stylize train (its shift term on)",
              "stylize-each-step": "stylize train, losses read every step"}  # GPU only


def contenders(device: torch.device) -> dict[str, str]:
    """On the CPU reading the losses every step costs nothing: stylize reads them every step."""
    return {k: v for k, v in CONTENDERS.items() if k != "stylize-each-step" or device.type != "cpu"}


def photos_and_style(folder: Path) -> tuple[Path, Path]:
    """../shared's photos and starry night, or generated scenes and the bundled swirls."""
    photos_dir, style = SHARED / "photos", SHARED / "styles" / "starry_night.jpg"
    if photos_dir.is_dir():
        return photos_dir, style
    photos_dir = folder / "photos"
    if not photos_dir.is_dir():  # the parent makes them; its child processes reuse them
        photos_dir.mkdir()
        for i in range(16):
            Image.effect_mandelbrot((400, 300), (-2 + i * 0.02, -1.2, 1, 1.2), 100).convert("RGB").save(
                photos_dir / f"p{i}.jpg")
    return photos_dir, REPO / "samples" / "swirls.jpg"


def child(args: argparse.Namespace, device: torch.device, network: TransformerConfig, config: TrainConfig,
          folder: Path) -> float:
    """Runs in a child process: one contender's images/s."""
    if args.child != "reference":
        reuse_freed_memory()
    photos_dir, style = photos_and_style(folder)
    if args.child == "stylize-same-loss":  # the reference's objective: no shift-consistency term
        config = dataclasses.replace(config, shift_weight=0.0)
    if args.child.startswith("stylize"):
        report_every = 0.0 if args.child == "stylize-each-step" else None
        return ours(photos_dir, style, config, network, args.device, args.steps, folder, report_every)
    return reference(scan_photos(photos_dir).paths, style, config, network, device, args.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1, help="times each contender is run, in turn")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--shuffle", type=int, default=1)
    parser.add_argument("--half", action=argparse.BooleanOptionalAction, default=None,
                        help="stylize train --half / --no-half [default: its default on this device]")
    parser.add_argument("--content-layers", default=None, help="as stylize train's option [default: its default]")
    parser.add_argument("--style-layers", default=None, help="as stylize train's option [default: its default]")
    parser.add_argument("--child", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    network = TransformerConfig(width=args.width, blocks=args.blocks, shuffle=args.shuffle)
    loss = TrainConfig().loss
    if args.content_layers:
        loss = dataclasses.replace(loss, content_layers=parse_layer_weights(args.content_layers, "--content-layers"))
    if args.style_layers:
        loss = dataclasses.replace(loss, style_layers=parse_layer_weights(args.style_layers, "--style-layers"))
    config = TrainConfig(image_size=args.image_size, batch_size=args.batch_size, checkpoint_every=10**6,
                         half=args.half, loss=loss)
    if args.child:
        print(json.dumps(child(args, device, network, config, args.folder)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos_dir, _ = photos_and_style(folder)
        print(f"device: {device_name(device)}; torch {torch.__version__}; {len(scan_photos(photos_dir).paths)} "
              f"photos; {args.image_size} px, batch {args.batch_size}; network {network.width}/{network.blocks}/"
              f"shuffle {network.shuffle}; content {format_layer_weights(loss.content_layers)}; style "
              f"{format_layer_weights(loss.style_layers)}"
              f"; stylize train {'with' if resolve_half(device, args.half) else 'without'} --half")
        rates: dict[str, list[float]] = {name: [] for name in contenders(device)}
        for _ in range(args.rounds):
            for name in rates:
                rates[name].append(run_child(__file__, [*sys.argv[1:], "--child", name, "--folder", str(folder)]))
    best = {name: max(values) for name, values in rates.items()}
    for name in rates:
        label = CONTENDERS[name]
        runs = ", ".join(f"{v:.2f}" for v in rates[name])
        ratio = "" if name == "reference" else f"   {best[name] / best['reference']:.2f}x the reference"
        print(f"   {label:42s} {best[name]:8.2f} images/s (best of {runs}){ratio}")
    same = best["stylize-same-loss"]
    print(f"   stylize train with the reference's loss vs the reference with reused memory: "
          f"{same / best['reference-reuse']:.2f}x; vs the plain reference (aim >= 1.5): "
          f"{same / best['reference']:.2f}x; "
          f"with its default shift term: {best['stylize'] / best['reference']:.2f}x")


if __name__ == "__main__":
    main()
