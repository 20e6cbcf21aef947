"""The feed-forward transformer network of Johnson et al. (2016), with Ulyanov et al.'s
instance normalisation (2017) by default.

Reflection padding everywhere (no dark borders), strided convolutions down, residual blocks,
then nearest-neighbour upsampling followed by a convolution instead of transposed convolutions
(Odena et al. 2016: no checkerboard artefacts). Input and output are RGB in [0,1]; any size
works (the input is padded to a multiple of 4 and the output cropped back).

State-dict key names are a file format (model files store them): keep them stable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylize.config import NormKind
from stylize.errors import InputError


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture; saved in model files so they rebuild themselves."""

    width: int = 32  # channels of the first layer; then 2x and 4x
    blocks: int = 5  # residual blocks
    norm: NormKind = NormKind.instance

    def __post_init__(self) -> None:
        if self.width < 4 or self.width > 256:
            raise InputError(f"--width must be between 4 and 256, got {self.width}")
        if self.blocks < 0 or self.blocks > 32:
            raise InputError(f"--blocks must be between 0 and 32, got {self.blocks}")

    def to_dict(self) -> dict:
        return {**asdict(self), "norm": self.norm.value}

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        return cls(width=int(data["width"]), blocks=int(data["blocks"]), norm=NormKind(data["norm"]))


MIN_SIDE = 16  # smaller inputs are padded up to this
CLASSIC = TransformerConfig(width=32, blocks=5)  # Johnson et al.'s 32-64-128, 5 residual blocks
SMALL = TransformerConfig(width=16, blocks=3)  # the faster preset


class IBNorm(nn.Module):
    """Instance norm on the first half of the channels, batch norm on the rest (IBN-Net's IBN-a)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.instance = nn.InstanceNorm2d(self.split, affine=True)
        self.batch = nn.BatchNorm2d(channels - self.split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, : self.split], x[:, self.split:]
        return torch.cat([self.instance(a.contiguous()), self.batch(b.contiguous())], dim=1)


def make_norm(kind: NormKind, channels: int, early: bool) -> nn.Module:
    """The normalisation layer; IBN mixes only in the early layers, later layers use instance norm."""
    if kind is NormKind.batch:
        return nn.BatchNorm2d(channels)
    if kind is NormKind.ibn and early:
        return IBNorm(channels)
    return nn.InstanceNorm2d(channels, affine=True)


class ConvNormAct(nn.Module):
    """Reflection pad, convolution, normalisation, optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: NormKind = NormKind.instance,
                 early: bool = False, relu: bool = True, upsample: int = 1) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = make_norm(norm, cout, early)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        x = self.norm(self.conv(self.pad(x)))
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: NormKind, early: bool) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, norm=norm, early=early)
        self.conv2 = ConvNormAct(channels, channels, 3, norm=norm, early=early, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class TransformerNet(nn.Module):
    """Image-to-image network: ``[B,3,H,W]`` in [0,1] to the same size in [0,1]."""

    def __init__(self, config: TransformerConfig = CLASSIC) -> None:
        super().__init__()
        self.config = config
        w, norm = config.width, config.norm
        self.encoder = nn.Sequential(
            ConvNormAct(3, w, 9, norm=norm, early=True),
            ConvNormAct(w, 2 * w, 3, stride=2, norm=norm, early=True),
            ConvNormAct(2 * w, 4 * w, 3, stride=2, norm=norm, early=True),
        )
        # IBN-Net puts instance norm where appearance is encoded: the encoder and the first half
        # of the residual blocks; deeper layers keep batch statistics for content.
        self.residuals = nn.Sequential(*(ResidualBlock(4 * w, norm, early=i < config.blocks // 2)
                                         for i in range(config.blocks)))
        self.decoder = nn.Sequential(
            ConvNormAct(4 * w, 2 * w, 3, norm=norm, upsample=2),
            ConvNormAct(2 * w, w, 3, norm=norm, upsample=2),
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        # Pad to a multiple of 4 (two stride-2 layers) and to at least MIN_SIDE, so that every
        # reflection pad inside the network is smaller than the map it pads; crop back after.
        pad_h, pad_w = max(MIN_SIDE, h + (-h) % 4) - h, max(MIN_SIDE, w + (-w) % 4) - w
        x = image
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        x = self.head(self.decoder(self.residuals(self.encoder(x - 0.5))))
        return torch.sigmoid(x[..., :h, :w])


def stylize_image(network: TransformerNet, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One forward pass in inference mode (batch norm uses its running statistics)."""
    was_training = network.training
    network.eval()
    with torch.inference_mode():
        result = network(image.to(device)).float().cpu()
    network.train(was_training)
    return result
