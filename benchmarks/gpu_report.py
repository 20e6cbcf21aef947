"""The GPU figures in one short run: the default 512 px iterative run (and with --half), fast-model frames per
second at 1920x1080 in float32 and in half precision (one pass at a time, and frames of one size replayed as a
CUDA graph, as `stylize run --model` runs them; and what holding each frame to the one before costs, as
`--init previous` does), and `stylize train` images/s (with the reference loop's
objective, --shift-weight 0, and with the default shift-consistency term; on CUDA also without replaying the
step as a CUDA graph). The device is set up as stylize's commands set it up (cuDNN limited to deterministic
kernels); on CUDA the iterative run is also timed without that limit, and training with its losses read back
every step, with torch's own padding (whose gradients add up in a varying order) and with torch's instance
norm (stylize's runs as a group norm in float32), to show what each costs. Last, whether two identical
trainings give the same weights.

    python benchmarks/gpu_report.py [--device cuda] [--frames 50] [--train-steps 60]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from common import REPO, SHARED, device_name, setup_device, sync, timed, torch_instance_norm, torch_padding
from stylize.config import BackboneConfig, RunConfig, TrainConfig
from stylize.cudagraph import SameShapeReplay
from stylize.dataset import scan_photos
from stylize.device import half_dtype
from stylize.features import load_extractor
from stylize.imageio import fit_long_side, load_image, resize
from stylize.losses import required_layers
from stylize.modelfile import bundled_models, load_model
from stylize.motion import follow, hold
from stylize.optimize import ScaleProblem, run_iterative
from stylize.train import prepare_training, train
from stylize.transformer import CLASSIC, TransformerConfig, for_inference, infer
from train import ours, reference  # the training benchmark's two loops


@contextlib.contextmanager
def cudnn_deterministic(on: bool) -> Iterator[None]:
    """cuDNN limited to deterministic kernels (as stylize sets it up) or not, for the block. (Not
    mock.patch: the flag is a property of torch's module object, which patch would delete.)"""
    before = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = on
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic = before


def training_difference(photos: Path, style: Path, config: TrainConfig, device: str, folder: Path) -> float:
    """The largest difference between the weights of two identical trainings (0: reproducible
    bit for bit, as on the CPU; a GPU's kernels that add with atomics, such as the backward of
    padding, would not be)."""
    weights = []
    for name in ("a.pt", "b.pt"):
        train(prepare_training(style, photos, folder / name, config, TransformerConfig(), BackboneConfig(), device,
                               overwrite=True))
        weights.append(load_model(folder / name).network.state_dict())
    return max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])


def frames_per_second(stylise: Callable[[torch.Tensor], torch.Tensor], frame: torch.Tensor, count: int) -> float:
    """Passes a second over ``count`` passes, after three more (kernels chosen, graphs recorded:
    SameShapeReplay records at the second)."""
    stylise(frame), stylise(frame)
    return 1 / timed(lambda: stylise(frame), frame.device, count)  # after its own warm-up call


def held_frames_per_second(network: torch.nn.Module, photo: torch.Tensor, size: tuple[int, int],
                           device: torch.device, count: int) -> None:
    """Print what holding a network's frame to the one before costs (--model --init previous): the
    optical flow (one, back to the frame before), the check and the blend (motion.hold) on the
    device, for two views of ``photo`` at ``size`` 4 px apart; the network's pass not included."""
    view = resize(photo, (size[0], size[1] + 4)).to(device)
    before, after = view[..., :-4], view[..., 4:]
    previous, result = (infer(network, image, device) for image in (before, after))
    moved = follow(before, after)
    fps = frames_per_second(lambda image: hold(result, previous, before, image, moved, 2.0), after, count)
    print(f"fast model frames held to the one before (--init previous), {size[1]}x{size[0]}, the flow and the "
          f"blend: {fps:.1f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script on a CPU")
    args = parser.parse_args()
    device = setup_device(args.device)
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}")

    content_path, style_path = SHARED / "content" / "tubingen.jpg", SHARED / "styles" / "starry_night.jpg"
    if not content_path.exists():
        content_path, style_path = REPO / "samples" / "chelsea.jpg", REPO / "samples" / "swirls.jpg"
    content, style = load_image(content_path).rgb, load_image(style_path).rgb
    config = RunConfig(size=96, iterations=(2,)) if args.smoke else RunConfig()
    extractor = load_extractor(BackboneConfig(), required_layers(config.loss), device)
    run_iterative(content, [style], RunConfig(size=128, iterations=(5,)), extractor)  # warm-up
    scoring = ScaleProblem(extractor, dataclasses.replace(config, half=False), content.to(device), [style.to(device)],
                           fit_long_side(*content.shape[-2:], config.size))
    # The default (float32 on GPUs), then --half where it means bfloat16, then without the CUDA
    # graph (as stylize ran before it), then with cuDNN free to pick kernels that are not
    # deterministic (what stylize's reproducibility costs); objectives in float32.
    variants = [("", config, True)]
    if half_dtype(device) == torch.bfloat16:
        variants.append((" --half", dataclasses.replace(config, half=True), True))
    if device.type == "cuda":
        variants.append((", no CUDA graph", dataclasses.replace(config, cuda_graph=False), True))
        variants.append((", cuDNN not deterministic", config, False))
    for label, variant, cudnn_limited in variants:
        sync(device)
        start = time.perf_counter()
        with cudnn_deterministic(cudnn_limited):
            image = run_iterative(content, [style], variant, extractor).image
        sync(device)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            parts = scoring(image.to(device))
        print(f"iterative, default run at {config.size} px{label} ({content_path.name} + "
              f"{style_path.name}): {seconds:.2f} s, objective {float(parts.content + parts.style):.4f}")

    model = load_model(bundled_models()[0])
    frame = torch.rand(1, 3, 108, 192, device=device) if args.smoke else torch.rand(1, 3, 1080, 1920, device=device)
    # As `stylize run --model` runs it (its kernels folded once), and folding them at every call;
    # in float32 also with torch's instance norm (stylize's runs as a group norm there).
    inference = for_inference(model.network).to(device)
    for label, network, context, precisions in (
            ("", inference, contextlib.nullcontext, (False, True)),
            (", kernels folded at every call", model.network.to(device).eval(), contextlib.nullcontext, (False, True)),
            (", torch's instance norm", inference, torch_instance_norm, (False,))):
        for half in precisions:
            with context():
                fps = frames_per_second(functools.partial(infer, network, device=device, half=half), frame, args.frames)
            print(f"fast model {model.path.stem}{label}, {frame.shape[-1]}x{frame.shape[-2]}, "
                  f"{'half precision' if half else 'float32'}: {fps:.1f} frames/s")
    # Frames of one size as `stylize run --model` runs them: from the second on, one recorded pass replayed.
    for half in (False, True):
        replay = SameShapeReplay(functools.partial(infer, inference, device=device, half=half), device)
        fps = frames_per_second(replay, frame, args.frames)
        how = "replayed as a CUDA graph" if replay.replaying else "not recorded, eager"
        print(f"fast model {model.path.stem}, frames of one size ({how}), {frame.shape[-1]}x{frame.shape[-2]}, "
              f"{'half precision' if half else 'float32'}: {fps:.1f} frames/s")
    held_frames_per_second(inference, content, tuple(frame.shape[-2:]), device, max(2, args.frames // 5))

    photos = SHARED / "photos"
    if photos.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            size = 64 if args.smoke else 256
            train_config = TrainConfig(image_size=size, checkpoint_every=10**6)
            style_file = SHARED / "styles" / "starry_night.jpg"
            with cudnn_deterministic(False):  # the recipe, as it runs; stylize train limits cuDNN itself
                ref = reference(scan_photos(photos).paths, style_file, train_config, CLASSIC, device, args.train_steps)
            print(f"training, {size} px, batch 4, classic network: reference loop {ref:.1f} images/s")
            # --shift-weight 0 computes what the reference does (the aim's ratio); the default's
            # shift-consistency term also runs the network on each step's shifted crops.
            # Then each step eager, as stylize trained before its steps were replayed as a CUDA graph.
            for half, graph in ((False, True), (True, True), (False, False))[:3 if device.type == "cuda" else 2]:
                for shift in (0.0, TrainConfig().shift_weight):
                    cfg = TrainConfig(image_size=size, checkpoint_every=10**6, half=half, shift_weight=shift,
                                      cuda_graph=graph)
                    rate = ours(photos, style_file, cfg, CLASSIC, args.device, args.train_steps, Path(tmp))
                    print(f"   stylize train{' --half' if half else ''} --shift-weight {shift:g}"
                          f"{'' if graph else ', no CUDA graph'}: {rate:.1f} images/s ({rate / ref:.2f}x reference)")
            # The progress reports' reads wait for the device; before they were limited, every step read.
            cfg = TrainConfig(image_size=size, checkpoint_every=10**6, half=False, shift_weight=0.0)
            rate = ours(photos, style_file, cfg, CLASSIC, args.device, args.train_steps, Path(tmp), report_every=0.0)
            print(f"   stylize train --shift-weight 0, losses read every step: {rate:.1f} images/s "
                  f"({rate / ref:.2f}x reference)")
            # stylize.deterministic's fixed-order padding against torch's own (atomic adds).
            with torch_padding():
                rate = ours(photos, style_file, cfg, CLASSIC, args.device, args.train_steps, Path(tmp))
            print(f"   stylize train --shift-weight 0, torch's padding (not reproducible): {rate:.1f} images/s "
                  f"({rate / ref:.2f}x reference)")
            with torch_instance_norm():  # stylize's runs as a group norm in float32
                rate = ours(photos, style_file, cfg, CLASSIC, args.device, args.train_steps, Path(tmp))
            print(f"   stylize train --shift-weight 0, torch's instance norm: {rate:.1f} images/s "
                  f"({rate / ref:.2f}x reference)")
            gap = training_difference(photos, style_file, TrainConfig(image_size=size, steps=5), args.device, Path(tmp))
            print(f"training twice, 5 steps, same seed: weights {'equal' if gap == 0 else 'differ'} "
                  f"(largest difference {gap:.3g})")
    else:
        print("training: skipped (no ../shared/data/photos)")


if __name__ == "__main__":
    main()
