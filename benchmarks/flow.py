"""The two optical flows of a video frame (--init previous: there and back, for the reliability
check), found one at a time against both at once (one batch of two, as stylize.flow.flows_both_ways
finds them for frames of at most ONE_BATCH_PIXELS on a CPU, and always on a GPU), side by side on
the same frames.

    python benchmarks/flow.py [--sizes 256,512] [--repeats 5] [--device cpu]

The frames: tubingen, and the same view 3 px to the left and 1 px up with an object (a piece
of golden_gate) moved 4 px. Printed for each size: the median seconds of each way, alternated so
that the machine's drift hits both, their ratio, and the largest difference between the flows
the two ways find (the same, to float rounding). Reads ../shared/data (STYLIZE_SHARED to point
elsewhere)."""

from __future__ import annotations

import argparse
from unittest.mock import patch

import torch

from common import SHARED, alternate, device_name, setup_device
from stylize import flow
from stylize.flow import estimate_flow, flows_both_ways
from stylize.imageio import fit_long_side, load_image, resize


def frames(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two frames of ``size`` long side: a 3 px pan with an object moving on its own."""
    photo = load_image(SHARED / "content" / "tubingen.jpg").rgb
    height, width = fit_long_side(*photo.shape[-2:], size)
    big = resize(photo, (height + 16, width + 16))
    thing = resize(load_image(SHARED / "content" / "golden_gate.jpg").rgb, (height // 3, width // 3))
    before, after = big[..., 8:8 + height, 8:8 + width].clone(), big[..., 7:7 + height, 5:5 + width].clone()
    top, left = height // 3, width // 4
    before[..., top:top + height // 3, left:left + width // 3] = thing
    after[..., top:top + height // 3, left + 4:left + 4 + width // 3] = thing
    return before.to(device), after.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = setup_device(args.device)
    print(f"device: {device_name(device)}")
    for size in (int(s) for s in args.sizes.split(",")):
        before, after = frames(size, device)
        moved = (1.0, 3.0)  # the view moved up 1 and left 3: the picture down 1 and right 3
        one_at_a_time = lambda: (estimate_flow(after, before, (-moved[0], -moved[1])),  # noqa: E731
                                 estimate_flow(before, after, moved))

        def at_once() -> tuple[torch.Tensor, torch.Tensor]:
            with patch.object(flow, "ONE_BATCH_PIXELS", float("inf")):
                return flows_both_ways(before, after, moved)

        seconds = alternate({"one at a time": one_at_a_time, "both at once": at_once}, device, args.repeats)
        difference = max(float((a - b).abs().max()) for a, b in zip(one_at_a_time(), at_once()))
        batched = device.type != "cpu" or before[0, 0].numel() <= flow.ONE_BATCH_PIXELS
        ratio = seconds["one at a time"] / seconds["both at once"]
        print(f"{size} px ({tuple(before.shape[-2:])}): one at a time {seconds['one at a time']:.3f} s, "
              f"both at once {seconds['both at once']:.3f} s: {ratio:.2f}x; largest difference {difference:.2e} px; "
              f"stylize: {'at once' if batched else 'one at a time'}", flush=True)

if __name__ == "__main__":
    main()
