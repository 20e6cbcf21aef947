"""Mixed precision (--half) against float32, part by part, side by side in one run.

    python benchmarks/precision.py [--device cpu] [--repeats 5]

Prints medians of alternating calls (float32, then half: bfloat16 autocast, or float16 on GPUs
without bfloat16, as --half runs it) of:
1. VGG-16 forward+backward to relu5_1: one 512x384 image (an iterative step's backbone) and a
   training batch (4 x 256 px);
2. the iterative optimiser's step at 512x384 (L-BFGS's memory full; under --half its Gram
   products are bfloat16 too, its targets, errors and L-BFGS float32);
3. the classic transformer's forward+backward for a training batch;
4. the bundled default model stylising a 1024x768 photo, with the largest difference between
   the two outputs (0-255 levels).
Whether the default turns --half on here: `stylize info`. Time to quality and training speed in
the default precision: iterative.py and train.py.
"""

from __future__ import annotations

import argparse

import torch

from common import REPO, SHARED, alternate, backbone_pass, device_name, setup_device
from stylize.config import BackboneConfig, RunConfig
from stylize.device import autocast, half_dtype, resolve_half, reuse_freed_memory
from stylize.features import load_extractor
from stylize.imageio import fit_long_side, load_image, resize
from stylize.losses import required_layers
from stylize.modelfile import load_model
from stylize.optimize import LBFGS_HISTORY, ScaleOptimizer, ScaleProblem
from stylize.transformer import CLASSIC, TransformerNet, for_inference, stylize_image


def optimiser_step(extractor, content: torch.Tensor, style: torch.Tensor, half: bool):
    """An iterative step at 512 px after as many steps as L-BFGS remembers."""
    config = RunConfig(half=half)
    problem = ScaleProblem(extractor, config, content, [style], fit_long_side(*content.shape[-2:], 512))
    run = ScaleOptimizer(problem, config, problem.content)
    for _ in range(LBFGS_HISTORY):
        run.step()
    return run.step


def network_pass(network: TransformerNet, batch: torch.Tensor, device: torch.device, half: bool):
    def run() -> None:
        with autocast(device, half):
            out = network(batch)
        out.float().sum().backward()
    return run


def compare(label: str, contenders: dict[str, object], device: torch.device, repeats: int) -> None:
    medians = alternate(contenders, device, repeats)
    full, half = medians["float32"], medians["half"]
    print(f"   {label:58s} float32 {full * 1000:8.1f} ms   half {half * 1000:8.1f} ms   {full / half:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does
    device = setup_device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; half = {half_dtype(device)}; "
          f"the default here: --half {'on' if resolve_half(device, None) else 'off'}")
    content_path, style_path = SHARED / "content" / "tubingen.jpg", SHARED / "styles" / "starry_night.jpg"
    if not content_path.exists():  # a machine without ../shared: the bundled samples
        content_path, style_path = REPO / "samples" / "chelsea.jpg", REPO / "samples" / "swirls.jpg"
    content, style = load_image(content_path).rgb.to(device), load_image(style_path).rgb.to(device)
    extractor = load_extractor(BackboneConfig(), required_layers(RunConfig().loss), device)
    generator = torch.Generator().manual_seed(0)

    print("\n1. VGG-16 forward+backward to relu5_1")
    image = torch.rand(1, 3, 384, 512, generator=generator).to(device).requires_grad_(True)
    batch = torch.rand(4, 3, 256, 256, generator=generator).to(device).requires_grad_(True)
    for label, x in (("one 512x384 image", image), ("a training batch, 4 x 256 px", batch)):
        compare(label, {"float32": lambda x=x: backbone_pass(extractor, x, device),
                        "half": lambda x=x: backbone_pass(extractor, x, device, half=True)}, device, args.repeats)

    print("\n2. the iterative optimiser's step, 512 px")
    compare("L-BFGS step (VGG, Grams, errors, update)",
            {"float32": optimiser_step(extractor, content, style, False),
             "half": optimiser_step(extractor, content, style, True)}, device, args.repeats)

    print("\n3. training: the classic transformer's forward+backward")
    torch.manual_seed(0)
    network = TransformerNet(CLASSIC).to(device).train()
    compare("4 x 256 px", {"float32": network_pass(network, batch.detach(), device, False),
                           "half": network_pass(network, batch.detach(), device, True)}, device, args.repeats)

    print("\n4. fast stylisation with the bundled default model")
    model = for_inference(load_model("starry_night").network).to(device)  # as `stylize run --model` runs it
    photo = resize(content, fit_long_side(*content.shape[-2:], 1024))
    compare(f"one {photo.shape[-1]}x{photo.shape[-2]} photo",
            {"float32": lambda: stylize_image(model, photo, device),
             "half": lambda: stylize_image(model, photo, device, True)},
            device, args.repeats)
    difference = (stylize_image(model, photo, device) - stylize_image(model, photo, device, True)).abs().max()
    print(f"   largest difference between the two outputs: {float(difference) * 255:.1f} of 255 levels")


if __name__ == "__main__":
    main()
