"""The reference the benchmarks measure against: pytorch/examples' fast_neural_style recipe,
written plainly (every layer as its paper draws it, nothing cached or rearranged).

- PlainVGG: VGG-16 returning the listed layers, as the recipe's Vgg16 module does.
- PlainTransformer: a TransformerNet's layers run the way the recipe's TransformerNet runs
  them: nearest-neighbour upsampling to full size, reflection pad and a convolution there, and
  the 9x9 output convolution as one plain convolution. It shares the TransformerNet's
  parameters, so both compute the same function (``check_same_function``) for a network with
  the recipe's nearest-neighbour upsampling (``upsample="nearest"``, as the benchmarks build
  their reference); stylize's network computes those layers at the input's resolution or on
  2x2 blocks instead.
- gram: Gram matrices by autograd (two products in the backward pass).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from stylize.config import BackboneConfig
from stylize.features import build_features, layer_names, load_weights
from stylize.deterministic import ReflectionPad2d
from stylize.transformer import ConvNormAct, InstanceNorm, TransformerNet, UpsampleConv2d, pad_to_min_side


class PlainVGG(torch.nn.Module):
    """VGG-16 features returning the listed layers, as the recipe's Vgg16 module does."""

    def __init__(self, layers: list[str]) -> None:
        super().__init__()
        names = layer_names("vgg16")
        self.index = {names.index(n): n for n in layers}
        self.body = build_features("vgg16", max(self.index) + 1)
        weights = load_weights(BackboneConfig())
        self.body.load_state_dict({k: v for k, v in weights.state.items() if k in self.body.state_dict()})
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        for i, module in enumerate(self.body):
            x = module(x)
            if i in self.index:
                out[self.index[i]] = x
        return out


def gram(y: torch.Tensor) -> torch.Tensor:
    b, c, h, w = y.shape
    features = y.view(b, c, h * w)
    return features.bmm(features.transpose(1, 2)) / (h * w)


def _plain_conv(pad: torch.nn.Module, conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A padded convolution as the recipe draws it: an upsampling one (UpsampleConv2d) as its
    UpsampleConvLayer, upsampled to full size, reflection-padded, then convolved."""
    if isinstance(conv, UpsampleConv2d):
        x = F.pad(F.interpolate(x, scale_factor=2.0, mode="nearest"), (1, 1, 1, 1), mode="reflect")
    elif isinstance(pad, ReflectionPad2d):
        # torch's own padding, as the recipe pads (on a GPU its gradient adds with atomics)
        x = F.pad(x, (pad.pad,) * 4, mode="reflect")
    return F.conv2d(x, conv.weight, conv.bias, conv.stride)


def _plain_layer(layer: ConvNormAct, x: torch.Tensor) -> torch.Tensor:
    x = _plain_conv(layer.pad, layer.conv, x)
    # torch's instance norm, as the recipe normalises (stylize's runs as a group norm in float32)
    x = torch.nn.InstanceNorm2d.forward(layer.norm, x) if isinstance(layer.norm, InstanceNorm) else layer.norm(x)
    return F.relu(x) if layer.relu else x


class PlainTransformer(torch.nn.Module):
    """``net``'s layers, computed as the recipe computes them (see the module docstring)."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        net, (h, w) = self.net, image.shape[-2:]
        x = pad_to_min_side(image - 0.5, net.min_side)
        m = 0 if net.training else net.margin  # as TransformerNet: its edge margin at inference only
        if m > 0:
            x = F.pad(x, (m, m, m, m), mode="reflect")
        x = F.pad(x, (0, (-x.shape[-1]) % net.stride, 0, (-x.shape[-2]) % net.stride), mode="reflect")
        if net.shuffle > 1:
            x = F.pixel_unshuffle(x, net.shuffle)
        for layer in net.encoder:
            x = _plain_layer(layer, x)
        for block in net.residuals:
            x = x + _plain_layer(block.conv2, _plain_layer(block.conv1, x))
        for layer in net.decoder:
            x = _plain_layer(layer, x)
        x = _plain_conv(net.head[0], net.head[1], x)
        if net.shuffle_out > 1:
            x = F.pixel_shuffle(x, net.shuffle_out)
        return torch.sigmoid(x[..., m:m + h, m:m + w])


def check_same_function(net: TransformerNet) -> float:
    """Largest difference between the two on a random batch, on the CPU in float32 (a GPU's TF32
    convolutions would round each differently); raises if they disagree."""
    net = copy.deepcopy(net).cpu().float()
    x = torch.rand(2, 3, 72, 88, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        worst = float((net(x) - PlainTransformer(net)(x)).abs().max())
    if worst > 1e-4:
        raise SystemExit(f"PlainTransformer and TransformerNet disagree by {worst}")
    return worst
