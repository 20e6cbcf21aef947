"""--mask in the iterative method: the style loss guided by the mask (what stylize does) against
a whole-picture run blended over the photo afterwards (what --model runs do, and what the mask
did before it guided the loss). Both results are blended over the photo by the mask; each is
scored by its style error within the mask (the guided statistic against the painting's, as the
run measures it) and its content error, in float32, with the same backbone and layers.

    python benchmarks/mask.py [--size 384] [--device cpu]

Masks are drawn here: the top 45 % of the photo (a sky) and the bottom 35 % (water), their
edges blurred. Reads ../shared/data (STYLIZE_SHARED to point elsewhere)."""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from common import SHARED, device_name, setup_device
from stylize.config import BackboneConfig, RunConfig
from stylize.features import load_loss_extractor
from stylize.imageio import apply_mask, load_image, resize
from stylize.losses import content_layer_weights, style_layer_weights
from stylize.optimize import ScaleProblem, run_iterative

CASES = [("golden_gate", "starry_night", "sky"), ("golden_gate", "the_scream", "water"),
         ("tubingen", "shipwreck", "sky")]


def band(height: int, width: int, region: str) -> torch.Tensor:
    """A [1,1,H,W] mask: the top 45 % (sky) or the bottom 35 % (water), edges blurred over 4 %."""
    rows = torch.linspace(0, 1, height).view(1, 1, height, 1)
    edge = 0.04
    mask = ((0.45 - rows) / edge + 0.5) if region == "sky" else ((rows - 0.65) / edge + 0.5)
    return mask.clamp(0, 1).expand(1, 1, height, width).contiguous()


def score(extractor, config: RunConfig, content: torch.Tensor, style: torch.Tensor, mask: torch.Tensor,
          image: torch.Tensor) -> tuple[float, float]:
    """(style error within the mask, content error) of ``image``, unweighted, in float32."""
    with torch.no_grad():
        parts = ScaleProblem(extractor, dataclasses.replace(config, half=False), content, [style],
                             tuple(image.shape[-2:]), mask=mask)(image.to(content.device))
    loss = config.loss
    return parts.style.item() / loss.style_weight, parts.content.item() / loss.content_weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = setup_device(args.device)
    config = RunConfig(size=args.size)
    extractor, _ = load_loss_extractor(BackboneConfig(), list(content_layer_weights(config.loss)),
                                       list(style_layer_weights(config.loss)), device)
    print(f"device: {device_name(device)}; --size {args.size}, default options otherwise")
    for content_name, style_name, region in CASES:
        content = load_image(SHARED / "content" / f"{content_name}.jpg").rgb
        style = load_image(SHARED / "styles" / f"{style_name}.jpg").rgb
        mask = band(*content.shape[-2:], region)
        results = {}
        for name, guide in (("blended after", None), ("guided", mask)):
            start = time.perf_counter()
            image = run_iterative(content, [style], config, extractor, mask=guide).image
            seconds = time.perf_counter() - start
            image = apply_mask(image, content, mask)
            photo = resize(content, tuple(image.shape[-2:])).to(device)
            results[name] = (*score(extractor, config, photo, style.to(device), mask, image), seconds)
        print(f"{content_name} x {style_name}, the {region}:")
        for name, (style_error, content_error, seconds) in results.items():
            print(f"   {name:14s} style error within the mask {style_error:.4f}   content error {content_error:.4f}"
                  f"   {seconds:.1f} s")
        ratio = results["blended after"][0] / max(results["guided"][0], 1e-12)
        print(f"   guided: {ratio:.1f}x closer to the painting's statistics within the mask")


if __name__ == "__main__":
    main()
