"""Models trained by other tools, read as stylize networks: pytorch/examples' fast_neural_style.

Its TransformerNet (the ``.pth`` files its ``train`` writes, and the candy, mosaic, udnie and
rain_princess models it offers) is Johnson et al.'s network as stylize's classic layout builds
it: 32-64-128 channels, 5 residual blocks, instance norm, reflection padding, nearest-neighbour
upsampling before a 3x3 convolution. Two differences are folded into the weights, so the
network computes the same function:

* it takes pixels in 0-255: its first convolution's weights are multiplied by 255 (stylize's
  input is centred on 0 instead; the instance norm after that convolution removes any constant);
* it returns its last layer's values clipped to 0-255: the output convolution's weights and
  bias are divided by 255, and the network clamps to [0,1] where stylize's apply a sigmoid
  (``TransformerConfig.output``).

stylize then runs it with its own edge margin (``transformer.EDGE_MARGIN``), so pixels along
the borders come out as interior ones do.
"""

from __future__ import annotations

import re

import torch

from stylize.transformer import TransformerConfig, TransformerNet

SOURCE = "pytorch/examples fast_neural_style"
# Its layers, by name, and the modules of stylize's network that compute them.
_TOP = {"conv1.conv2d": "encoder.0.conv", "in1": "encoder.0.norm", "conv2.conv2d": "encoder.1.conv",
        "in2": "encoder.1.norm", "conv3.conv2d": "encoder.2.conv", "in3": "encoder.2.norm",
        "deconv1.conv2d": "decoder.0.conv", "in4": "decoder.0.norm", "deconv2.conv2d": "decoder.1.conv",
        "in5": "decoder.1.norm", "deconv3.conv2d": "head.1"}
_RESIDUAL = {"conv1.conv2d": "conv1.conv", "in1": "conv1.norm", "conv2.conv2d": "conv2.conv", "in2": "conv2.norm"}
# Older torch saved an instance norm's unused running statistics; the recipe drops them too.
_UNUSED = re.compile(r"in\d+\.running_(mean|var)$")


def is_fast_neural_style(state: object) -> bool:
    """Whether a loaded ``.pth`` is the state dict of fast_neural_style's TransformerNet."""
    return isinstance(state, dict) and "conv1.conv2d.weight" in state and "deconv3.conv2d.weight" in state


def from_fast_neural_style(state: dict[str, torch.Tensor]) -> TransformerNet:
    """stylize's network computing the same function as fast_neural_style's with ``state``.
    Raises ValueError (or the RuntimeError of load_state_dict) for a state dict that does not fit."""
    renamed = {_rename(key): value for key, value in state.items() if not _UNUSED.search(key)}
    blocks = len({key.split(".")[1] for key in renamed if key.startswith("residuals.")})
    config = TransformerConfig(width=int(state["conv1.conv2d.weight"].shape[0]), blocks=blocks,
                               upsample="nearest", output="clamp")
    renamed["encoder.0.conv.weight"] = renamed["encoder.0.conv.weight"] * 255.0
    renamed["head.1.weight"] = renamed["head.1.weight"] / 255.0
    renamed["head.1.bias"] = renamed["head.1.bias"] / 255.0
    network = TransformerNet(config)
    network.load_state_dict(renamed)
    return network.eval()


def _rename(key: str) -> str:
    layer, _, param = key.rpartition(".")
    if layer in _TOP:
        return f"{_TOP[layer]}.{param}"
    found = re.fullmatch(r"res(\d+)\.(.+)", layer)
    if found and found.group(2) in _RESIDUAL and int(found.group(1)) >= 1:
        return f"residuals.{int(found.group(1)) - 1}.{_RESIDUAL[found.group(2)]}.{param}"
    raise ValueError(f"unexpected layer {key!r}")
