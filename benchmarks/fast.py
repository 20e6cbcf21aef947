"""Fast stylisation: inference time per preset and training throughput, side by side in one run.

    python benchmarks/fast.py [--device cuda] [--repeats 3]

Prints the time to stylise a 1024x768 image with each network preset next to the classic
architecture (Johnson et al.: 32-64-128 channels, 5 residual blocks, instance norm), and
training images/s of `stylize train`'s step at 256 px, batch 4.
"""

from __future__ import annotations

import argparse
import time

import torch

from stylize.config import BackboneConfig, LossConfig
from stylize.device import resolve_device
from stylize.features import load_extractor
from stylize.losses import PerceptualLoss, required_layers, style_targets
from stylize.transformer import CLASSIC, SMALL, TransformerNet


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_inference(net: TransformerNet, image: torch.Tensor, device: torch.device, repeats: int) -> float:
    net = net.to(device).eval()
    with torch.inference_mode():
        net(image)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            net(image)
        sync(device)
    return (time.perf_counter() - start) / repeats


def time_training(net: TransformerNet, device: torch.device, steps: int) -> float:
    loss_cfg = LossConfig()
    extractor = load_extractor(BackboneConfig(), required_layers(loss_cfg), device)
    with torch.no_grad():
        feats = extractor(torch.rand(1, 3, 256, 256, device=device))
    loss_fn = PerceptualLoss(loss_cfg, style_targets([feats], [1.0], loss_cfg.style_loss)).to(device)
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = torch.rand(4, 3, 256, 256, device=device)

    def step() -> None:
        with torch.no_grad():
            targets = {"relu4_2": extractor(batch)["relu4_2"]}
        out = net(batch)
        parts = loss_fn(out, extractor(out), targets)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer.step()

    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    torch.manual_seed(0)
    image = torch.rand(1, 3, 768, 1024, device=device)
    classic = time_inference(TransformerNet(CLASSIC), image, device, args.repeats)
    print("\ninference, 1024x768:")
    for label, config in (("classic (32, 5 blocks)", CLASSIC), ("small (16, 3 blocks)", SMALL)):
        seconds = time_inference(TransformerNet(config), image, device, args.repeats)
        print(f"   {label:<24} {seconds * 1000:8.1f} ms   speed-up vs classic {classic / seconds:.2f}x")
    print("\ntraining, 256 px, batch 4:")
    for label, config in (("classic", CLASSIC), ("small", SMALL)):
        print(f"   {label:<24} {time_training(TransformerNet(config), device, args.train_steps):8.2f} images/s")


if __name__ == "__main__":
    main()
