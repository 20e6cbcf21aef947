"""Trained models side by side: the style and content loss of their outputs under the bundled VGG.

For deciding whether a retrained model should replace a bundled one (`TRAIN_MODELS=1 bash
benchmarks/gpu.sh` writes candidates): each model stylises the same photos (../shared/data/content
and the samples, at --size), and each output is scored with `stylize run`'s default loss layers
(with --train-layers, `stylize train`'s): style against the model's own painting
(../shared/data/styles, at --style-size, as the bundled models were trained), content (relu4_2;
relu2_2 with --train-layers) against the photo; and the most lattice power at 4 and 2 px over
the photos (``stylize.lattice.lattice_power``: about 1 for a photo, a grid on the network's
upsampled maps shows as a spike), with the grid's largest amplitude in grey levels
(``lattice_amplitude``: the visible grids of earlier models were 0.8-5 levels; a spike of a few
hundredths of a level cannot be seen). The objective is content + style weight x style, with
the style weight of those layers' command (30 for run, 5 for train; no tv or shift term). Lower
is closer for both losses; they pull against each other, and each model does best under the
layers it was trained with, so look at the images too (--save DIR writes them, numbered in the
order the models were given).

    python benchmarks/model_quality.py starry_night path/to/candidate.pt [--size 512] [--save DIR] [--train-layers]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import REPO, SHARED
from stylize.config import BackboneConfig, LossConfig, TrainConfig, format_layer_weights
from stylize.features import load_extractor
from stylize.imageio import fit_long_side, load_image, resize, save_image
from stylize.losses import PerceptualLoss, content_layer_weights, required_layers, style_layer_weights, style_targets
from stylize.modelfile import load_model
from stylize.lattice import lattice_amplitude, lattice_power
from stylize.transformer import stylize_image

CPU = torch.device("cpu")


def photos() -> list[Path]:
    shared = sorted((SHARED / "content").glob("*.jpg")) if (SHARED / "content").is_dir() else []
    return shared + [REPO / "samples" / "chelsea.jpg", REPO / "samples" / "astronaut.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model files or bundled names")
    parser.add_argument("--size", type=int, default=512, help="long side of the photos")
    parser.add_argument("--style-size", type=int, default=256, help="long side of the painting")
    parser.add_argument("--save", type=Path, help="write each output here")
    parser.add_argument("--train-layers", action="store_true",
                        help="score with stylize train's layers instead of stylize run's")
    args = parser.parse_args()
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    layers = TrainConfig().loss if args.train_layers else LossConfig()
    config = LossConfig(content_weight=1.0, style_weight=1.0, tv_weight=0.0, content_layers=layers.content_layers,
                        style_layers=layers.style_layers)
    print(f"content {format_layer_weights(config.content_layers)}, style {format_layer_weights(config.style_layers)}")
    extractor = load_extractor(BackboneConfig(), required_layers(config), CPU)
    images = [load_image(p).rgb for p in photos()]
    images = [resize(i, fit_long_side(*i.shape[-2:], args.size)) for i in images]
    print(f"photos at {args.size} px: {', '.join(p.stem for p in photos())}; mean loss over them")
    for number, name in enumerate(args.models, 1):
        model = load_model(name)
        painting = load_image(SHARED / "styles" / model.meta["style_name"]).rgb
        painting = resize(painting, fit_long_side(*painting.shape[-2:], args.style_size))
        with torch.no_grad():
            feats = extractor(painting)
            loss = PerceptualLoss(config, style_targets([{n: feats[n] for n in style_layer_weights(config)}], [1.0],
                                                        config.style_loss))
            style, content, lattice = [], [], []
            for path, image in zip(photos(), images):
                out = stylize_image(model.network, image, CPU)
                target = extractor(image)
                parts = loss(out, extractor(out), {n: target[n] for n in content_layer_weights(config)})
                style.append(float(parts.style))
                content.append(float(parts.content))
                lattice.append((lattice_power(out, 4), lattice_power(out, 2),
                                lattice_amplitude(out, 4), lattice_amplitude(out, 2)))
                if args.save:
                    save_image(out, args.save / f"{number}-{Path(name).stem}_{path.stem}.png", overwrite=True)
        mean_style, mean_content = sum(style) / len(style), sum(content) / len(content)
        power4, power2, amplitude4, amplitude2 = (max(column) for column in zip(*lattice))  # most over the photos
        print(f"{name:<40} style {mean_style:.4f}  content {mean_content:.4f}  "
              f"objective {mean_content + layers.style_weight * mean_style:.4f}   "
              f"(style per photo: {' '.join(f'{s:.3f}' for s in style)})   lattice at 4 / 2 px, most: "
              f"{power4:.1f} / {power2:.1f} (amplitude {amplitude4:.2f} / {amplitude2:.2f} levels)")


if __name__ == "__main__":
    main()
