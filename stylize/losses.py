"""Perceptual losses: content, style (Gram or mean/std) and total variation; and the
shift-consistency term that training adds.

Normalisation, and why it differs from Gatys et al. (2016):

* Gram matrices are divided by the number of positions H*W, so a Gram is the *average* outer
  product of feature vectors. It then no longer grows with the image, which is what lets the
  same style weight work at every scale of a coarse-to-fine run and with ``--style-scale``.
* Each layer's error is *relative*: ``||G - A||^2 / ||A||^2`` (content: ``||F - P||^2 / ||P||^2``).
  Gatys' ``1/(4 N^2 M^2)`` factor leaves layers with many channels or large activations orders
  of magnitude apart, so per-layer weights had to absorb that; relative errors make every layer
  start on the same footing and make the per-layer weights lambda mean what they say.
  Layer weights are normalised to sum to one, so adding a layer does not change the balance
  between content and style.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from stylize.config import LayerWeights, LossConfig, StyleLossKind

EPS = 1e-8  # keeps square roots and divisions by norms finite (tiledloss uses the same)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``[B,C,H,W] -> [B,C,C]`` in float32: F F^T divided by H*W (see module docstring).

    Works on channels-last features without copying them (they are then read as ``[B,HW,C]``).
    bfloat16 features (--half) stay bfloat16: the product accumulates in float32 and only its
    result is rounded (to ~3 digits, below the rounding the features already carry), with no
    float32 copy of the features and their gradient. That made --half's iterative step cheaper
    at an unchanged objective (benchmarks/RESULTS.md). float16 could overflow: float32 then."""
    if features.dtype != torch.bfloat16:
        features = features.float()
    b, c, h, w = features.shape
    if features.is_contiguous() or not features.is_contiguous(memory_format=torch.channels_last):
        return _Gram.apply(features.reshape(b, c, h * w), False)
    return _Gram.apply(features.permute(0, 2, 3, 1).reshape(b, h * w, c), True)


class _Gram(torch.autograd.Function):
    """G = X X^T / n with a backward of one matrix product: dX = (dG + dG^T) X / n. Autograd's
    own backward of X @ X^T takes two products and a sum of full-size gradients; on the CPU the
    Gram matrices were the largest cost after the convolutions (benchmarks/iterative.py)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, positions_first: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.positions_first = positions_first
        n = x.shape[1] if positions_first else x.shape[2]
        with torch.autocast(x.device.type, enabled=False):  # in x's own precision under --half
            gram = _matmul(x.transpose(1, 2), x) if positions_first else _matmul(x, x.transpose(1, 2))
        return gram.float() / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        n = x.shape[1] if ctx.positions_first else x.shape[2]
        sym = ((grad + grad.transpose(1, 2)) / n).to(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            return (_matmul(x, sym) if ctx.positions_first else _matmul(sym, x)), None


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for ``[B,m,k] x [B,k,n]``. With one image, a 2-D product: torch 2.14's CPU ``bmm``
    first copies a transposed bfloat16 operand when the batch is 1 (relu1_1's Gram at 512x384:
    48 against 9 ms), where ``mm`` reads it in place (benchmarks/RESULTS.md)."""
    return (a[0] @ b[0]).unsqueeze(0) if a.shape[0] == 1 else a @ b


def mean_std(features: torch.Tensor) -> torch.Tensor:
    """``[B,C,H,W] -> [B,2,C]``: per-channel mean and standard deviation over positions."""
    flat = features.flatten(2).float()  # under --half too
    mean = flat.mean(dim=2)
    std = (flat.var(dim=2, unbiased=False) + EPS).sqrt()
    return torch.stack([mean, std], dim=1)


def style_statistic(kind: StyleLossKind, features: torch.Tensor) -> torch.Tensor:
    """The statistic that describes style at one layer."""
    return gram_matrix(features) if kind is StyleLossKind.gram else mean_std(features)


def guided_statistic(kind: StyleLossKind, features: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The style statistic of the positions that ``guide`` selects (``[1,1,H,W]`` at the
    features' size, in [0,1]; grey weighs a position partly): Gatys et al. (2017)'s spatial
    control, the Gram of the guided features ``F*g``. Divided by ``sum(g^2)`` instead of H*W,
    it is the average outer product over the selected positions, so a region matches the whole
    painting's statistics (with the guide all ones, the plain statistic)."""
    weights = guide.float().pow(2)
    selected = weights.sum().clamp_min(EPS)
    if kind is StyleLossKind.gram:
        return gram_matrix(features * guide.to(features.dtype)) * (weights[0, 0].numel() / selected)
    flat, weights = features.flatten(2).float(), weights.flatten(2)
    mean = (flat * weights).sum(dim=2) / selected
    var = ((flat - mean.unsqueeze(2)).pow(2) * weights).sum(dim=2) / selected
    return torch.stack([mean, (var + EPS).sqrt()], dim=1)


def relative_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||value - target||^2 / ||target||^2`` per batch item, averaged over the batch.

    ``target`` may have batch size 1 and is then broadcast over ``value``'s batch.
    """
    value, target = value.float(), target.float()  # no-ops unless under --half
    dims = tuple(range(1, value.dim()))
    err = (value - target).pow(2).sum(dim=dims)
    norm = target.pow(2).sum(dim=dims).clamp_min(EPS)
    return (err / norm).mean()


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference between horizontal and vertical neighbours."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def temporal_consistency(image: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Ruder, Dosovitskiy and Brox (2016), eq. 7: the squared difference from ``target`` (the
    previous video frame's result moved onto this frame along the optical flow) where ``weights``
    ([1,1,H,W], 0-1) trust it, averaged over every pixel and channel as theirs is."""
    return ((image.float() - target).pow(2) * weights).mean()


def shift_consistency(output: torch.Tensor, shifted: torch.Tensor, dy: int, dx: int, band: int) -> torch.Tensor:
    """Mean squared difference between ``output`` moved up by ``dy`` and left by ``dx`` pixels and
    ``shifted``, the network's output for its input moved the same way, ignoring ``band`` pixels
    along every border (where the two inputs' padding differs). A network that follows its input
    pixel by pixel scores 0; one that draws a pattern fixed to its own pixel lattice (the 4-px
    grid of its upsampled maps) does not, unless the shift is a multiple of the pattern's period."""
    h, w = output.shape[-2], output.shape[-1]
    moved = output[..., dy + band:h - band, dx + band:w - band]
    return (moved.float() - shifted[..., band:h - dy - band, band:w - dx - band].float()).pow(2).mean()


def _normalised(layers: LayerWeights) -> dict[str, float]:
    total = sum(w for _, w in layers)
    return {name: w / total for name, w in layers if w > 0} if total > 0 else {}


def content_layer_weights(config: LossConfig) -> dict[str, float]:
    """Content layers in use (weight > 0) with weights summing to one."""
    return _normalised(config.content_layers) if config.content_weight > 0 else {}


def style_layer_weights(config: LossConfig) -> dict[str, float]:
    """Style layers in use (weight > 0) with weights summing to one."""
    return _normalised(config.style_layers)


def required_layers(config: LossConfig) -> list[str]:
    """Every layer the loss reads, for the feature extractor."""
    return list(dict.fromkeys([*content_layer_weights(config), *style_layer_weights(config)]))


@dataclass(frozen=True)
class LossParts:
    """The weighted terms of the objective (tensors, so callers can backpropagate)."""

    total: torch.Tensor
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    shift: torch.Tensor | None = None  # training's shift-consistency term, where it has one
    temporal: torch.Tensor | None = None  # a video frame's temporal term, where it has one

    def with_shift(self, shift: torch.Tensor) -> "LossParts":
        """These terms plus a (weighted) shift-consistency term."""
        return replace(self, total=self.total + shift, shift=shift)

    def with_temporal(self, temporal: torch.Tensor) -> "LossParts":
        """These terms plus a (weighted) temporal term (``temporal_consistency``)."""
        return replace(self, total=self.total + temporal, temporal=temporal)

    def as_floats(self) -> dict[str, float]:
        names = ["total", "content", "style", "tv"] + [n for n in ("shift", "temporal") if getattr(self, n) is not None]
        # One device-to-host copy for all of them (each float() on a GPU tensor is a sync).
        values = torch.stack([getattr(self, name).float() for name in names]).detach().tolist()
        return dict(zip(names, values))


class PerceptualLoss(nn.Module):
    """J = alpha * J_content + beta * J_style + tv * J_tv, with fixed style targets; ``guides``
    (per style layer, at its size): the style only where they select (``guided_statistic``)."""

    def __init__(self, config: LossConfig, style_targets: dict[str, torch.Tensor],
                 guides: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.config = config
        self.content_weights = content_layer_weights(config)
        self.style_weights = style_layer_weights(config)
        self.guided = guides is not None
        for name in self.style_weights:
            self.register_buffer(f"target_{name}", style_targets[name].detach(), persistent=False)
            if guides is not None:
                self.register_buffer(f"guide_{name}", guides[name].detach(), persistent=False)

    def _statistic(self, name: str, features: torch.Tensor) -> torch.Tensor:
        if self.guided:
            return guided_statistic(self.config.style_loss, features, getattr(self, f"guide_{name}"))
        return style_statistic(self.config.style_loss, features)

    def forward(self, image: torch.Tensor, features: dict[str, torch.Tensor],
                content_targets: dict[str, torch.Tensor]) -> LossParts:
        zero = image.new_zeros(())
        content = sum((w * relative_error(features[n], content_targets[n])
                       for n, w in self.content_weights.items()), zero)
        style = sum((w * relative_error(self._statistic(n, features[n]), getattr(self, f"target_{n}"))
                     for n, w in self.style_weights.items()), zero)
        tv = tv_loss(image) if self.config.tv_weight > 0 else zero
        c, s, t = self.config.content_weight * content, self.config.style_weight * style, self.config.tv_weight * tv
        return LossParts(total=c + s + t, content=c, style=s, tv=t)


def style_statistics(features: dict[str, torch.Tensor], kind: StyleLossKind) -> dict[str, torch.Tensor]:
    """The style statistic (Gram matrix or mean/std) of each layer's features."""
    return {name: style_statistic(kind, value) for name, value in features.items()}


def blend_statistics(statistics: list[dict[str, torch.Tensor]], blend: list[float]) -> dict[str, torch.Tensor]:
    """Weighted average of several style images' statistics (weights need not sum to one)."""
    total = sum(blend)
    targets: dict[str, torch.Tensor] = {}
    for stats, weight in zip(statistics, blend):
        for name, stat in stats.items():
            stat = stat * (weight / total)
            targets[name] = targets[name] + stat if name in targets else stat
    return targets


def style_targets(features: list[dict[str, torch.Tensor]], blend: list[float],
                  kind: StyleLossKind) -> dict[str, torch.Tensor]:
    """Blend the style statistics of several style images with the given weights."""
    return blend_statistics([style_statistics(f, kind) for f in features], blend)
