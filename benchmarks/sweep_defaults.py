"""Pick run defaults: stylise the ../shared pairs at 512 px under several weights and schedules.

Writes one contact sheet per pair (each cell labelled) and a JSON of times and objectives
(content + style at 512 px, same weights) to the folder given as the first argument.
Meant for a GPU; on the CPU here one pass takes about an hour.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from common import SHARED, setup_device
from stylize.config import BackboneConfig, LossConfig, RunConfig
from stylize.features import load_extractor
from stylize.imageio import load_image, to_pil
from stylize.losses import required_layers
from stylize.optimize import ScaleProblem, run_iterative
from stylize.sheet import grid

QUICK = bool(os.environ.get("SWEEP_QUICK"))  # a smoke test of this script
PAIRS = [("tubingen", "starry_night"), ("golden_gate", "the_scream"), ("tubingen", "shipwreck")]
SCHEDULES = {
    "single500": dict(scales=1, iterations=(500,)),
    "ms200-100-50": dict(scales=(128, 256), iterations=(200, 100, 50)),
    "ms100-60-40": dict(scales=(128, 256), iterations=(100, 60, 40)),
    "ms2-150-60": dict(scales=(256,), iterations=(150, 60)),
}
STYLE_WEIGHTS = [3.0, 10.0, 30.0, 100.0]


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    device = setup_device("auto")
    results = []
    for content_name, style_name in PAIRS:
        content = load_image(SHARED / "content" / f"{content_name}.jpg").rgb
        style = load_image(SHARED / "styles" / f"{style_name}.jpg").rgb
        cells = []
        for sw in STYLE_WEIGHTS:
            loss = LossConfig(style_weight=sw)
            extractor = load_extractor(BackboneConfig(), required_layers(loss), device)
            for label, schedule in SCHEDULES.items():
                if QUICK:
                    schedule = dict(scales=schedule["scales"], iterations=(2,))
                config = RunConfig(size=64 if QUICK else 512, loss=loss, **schedule)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                result = run_iterative(content, [style], config, extractor)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                size = tuple(result.image.shape[-2:])
                with torch.no_grad():
                    parts = ScaleProblem(extractor, config, content.to(device), [style.to(device)], size)(
                        result.image.to(device))
                row = dict(pair=f"{content_name}+{style_name}", style_weight=sw, schedule=label,
                           seconds=round(seconds, 2), content=float(parts.content), style=float(parts.style),
                           objective=float(parts.content + parts.style))
                print(json.dumps(row), flush=True)
                results.append(row)
                cells.append((f"sw={sw:g} {label} J={row['objective']:.3f}", to_pil(result.image)))
        sheet = grid([(label, img, True) for label, img in cells], len(SCHEDULES), 384)
        sheet.save(out / f"sheet_{content_name}_{style_name}.jpg", quality=88)
    (out / "sweep.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
