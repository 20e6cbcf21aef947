"""Padding and repeats whose gradients add up in the same order on every run, on any device.

On a GPU, torch's backward of reflection and replication padding and of ``repeat_interleave``
adds each output's gradient into the input's with atomic adds (so does indexing with repeated
indices, which the block convolution avoids: transformer.fold_block). Where several land on one
value (a border pixel that the padding copies) their order, and so the rounding of the sum,
changes from run to run, and two trainings with the same seed end with different weights
(pytorch/pytorch#68102; torch's deterministic mode refuses the padding instead). The versions
here compute the same values and sum the gradients in a fixed order.

They take over only where gradients flow on a device other than the CPU. The CPU's kernels are
deterministic already, so there torch's own operations run, and CPU results stay exactly what
they were (the bundled models are reproduced by their recipe). TorchScript compiles the plain
versions (an exported model only runs forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fixed_order_wanted(x: torch.Tensor) -> bool:
    """Whether a gradient will flow back through ``x`` on a device whose kernels add with atomics."""
    return x.device.type != "cpu" and x.requires_grad and torch.is_grad_enabled()


def pad2d(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """``F.pad(x, (pad,) * 4, mode)`` for ``mode`` "reflect" or "replicate"."""
    if not torch.jit.is_scripting():
        if _fixed_order_wanted(x):
            return _FixedOrderPad.apply(x, pad, mode)
    return F.pad(x, [pad, pad, pad, pad], mode=mode)


class ReflectionPad2d(nn.Module):
    """``nn.ReflectionPad2d(pad)`` (no parameters, so no state-dict keys) through ``pad2d``."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad2d(x, self.pad, "reflect")


class _FixedOrderPad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:  # type: ignore[override]
        ctx.pad, ctx.mode = pad, mode
        return F.pad(x, (pad, pad, pad, pad), mode=mode)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        fold = _fold_reflected if ctx.mode == "reflect" else _fold_replicated
        return fold(fold(grad, ctx.pad, -1), ctx.pad, -2), None, None


def _fold_reflected(grad: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """The gradient of reflection padding along ``dim``: padded position ``j < pad`` copied input
    ``pad - j``, and ``pad + n + k`` copied ``n - 2 - k``; their gradients are added back there."""
    n = grad.shape[dim] - 2 * pad
    out = grad.narrow(dim, pad, n).clone()
    if pad == 1 and n >= 4:  # both edges in one addition (a padding of 1 needs no flip)
        _pair(out, dim, 1, n - 3).add_(_pair(grad, dim, 0, n + 1))
        return out
    out.narrow(dim, 1, pad).add_(grad.narrow(dim, 0, pad).flip(dim))
    out.narrow(dim, n - 1 - pad, pad).add_(grad.narrow(dim, n + pad, pad).flip(dim))
    return out


def _fold_replicated(grad: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """The gradient of replication padding along ``dim``: each border copied its edge value."""
    n = grad.shape[dim] - 2 * pad
    out = grad.narrow(dim, pad, n).clone()
    if pad == 1 and n >= 2:  # both edges in one addition
        _pair(out, dim, 0, n - 1).add_(_pair(grad, dim, 0, n + 1))
        return out
    out.narrow(dim, 0, 1).add_(grad.narrow(dim, 0, pad).sum(dim, keepdim=True))
    out.narrow(dim, n - 1, 1).add_(grad.narrow(dim, n + pad, pad).sum(dim, keepdim=True))
    return out


def _pair(x: torch.Tensor, dim: int, first: int, step: int) -> torch.Tensor:
    """A view of positions ``first`` and ``first + step`` along ``dim``: adding two such views
    is one kernel on a GPU, where the edges one by one took two (and a flip each)."""
    index = [slice(None)] * x.dim()
    index[dim] = slice(first, first + step + 1, step)
    return x[tuple(index)]


def repeat_each(x: torch.Tensor, times: int) -> torch.Tensor:
    """``x.repeat_interleave(times)`` for a 1-D ``x``; its gradient is then a sum over the copies."""
    if not torch.jit.is_scripting():
        if _fixed_order_wanted(x):
            return x.unsqueeze(1).expand(-1, times).reshape(-1)
    return x.repeat_interleave(times)
