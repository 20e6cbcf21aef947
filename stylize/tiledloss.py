"""The iterative method's objective evaluated tile by tile: the same value and gradient as one
pass over the whole image, in the memory of one tile's pass.

Every term is a sum over positions: the content error, and the sums behind each style statistic
(a Gram matrix is the sum of the feature vectors' outer products over the positions, divided by
their number; a mean and a standard deviation come from the sums of the features and of their
squares). So an evaluation takes two passes over the tiles:

1. each tile, with a margin of ``features.reach`` pixels around it (so that its own features are
   those of the whole image, padding and pooling alike), runs forward without gradients, and
   each style layer's sums are added up; the style loss, and its gradient with respect to the
   sums, follow from the totals;
2. each tile runs again with gradients, and backpropagates its content error and the inner
   product of the sums' gradient with its own sums: by the chain rule, exactly its part of the
   whole image's gradient, which is added into the image's gradient over its crop.

Total variation needs no network and is taken over the whole image. crowsonkb/style_transfer
tiles approximately, shifting the tiles at each step to hide the seams; here there are none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stylize.config import LossConfig, StyleLossKind
from stylize.device import autocast
from stylize.features import FeatureExtractor, layer_stride, reach
from stylize.losses import (EPS, LossParts, content_layer_weights, gram_matrix, relative_error, style_layer_weights,
                            tv_loss)


@dataclass(frozen=True)
class Tile:
    """A region of the image and the crop its features are computed from: ``inner`` and ``crop``
    as (top, bottom, left, right) pixel bounds, the crop the region plus the margin, within the image."""

    inner: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]


def plan_tiles(height: int, width: int, tile: int, margin: int, stride: int) -> list[Tile]:
    """Regions of ``tile`` pixels (rounded down to a multiple of the deepest ``stride``, so that
    every crop starts on the pooling grid) covering the image, each with its crop."""
    tile = max(stride, tile // stride * stride)
    margin = -(-margin // stride) * stride
    tiles = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            crop = (max(0, top - margin), min(height, bottom + margin),
                    max(0, left - margin), min(width, right + margin))
            tiles.append(Tile((top, bottom, left, right), crop))
    return tiles


def _inner(features: torch.Tensor, tile: Tile, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """The positions of a crop's ``features`` (of a layer of this ``stride``) that stand for the
    tile's region; a region at the image's bottom or right edge takes them to the end (pooling
    drops a remainder of rows from the crop as from the whole image: the crop starts on its grid)."""
    (top, bottom, left, right), (ctop, _, cleft, _) = tile.inner, tile.crop
    rows = slice((top - ctop) // stride, None if bottom == size[0] else (bottom - ctop) // stride)
    cols = slice((left - cleft) // stride, None if right == size[1] else (right - cleft) // stride)
    return features[..., rows, cols]


def _sums(kind: StyleLossKind, features: torch.Tensor, guide: torch.Tensor | None = None) -> list[torch.Tensor]:
    """A style layer's sums over positions, in float32: the feature vectors' outer products
    ([1,C,C]) for a Gram matrix; the features and their squares ([1,C] each) for mean and std.
    With a ``guide`` (a --mask at the features' size) each position weighs its square, as in
    losses.guided_statistic."""
    positions = features.shape[-2] * features.shape[-1]
    if kind is StyleLossKind.gram:  # (a region narrower than a deep layer's stride has no positions there)
        guided = features if guide is None else features * guide.to(features.dtype)
        return [gram_matrix(guided) * positions if positions else features.new_zeros(
            (1, features.shape[1], features.shape[1]), dtype=torch.float32)]
    flat = features.flatten(2).float()
    weights = 1.0 if guide is None else guide.float().pow(2).flatten(2)
    return [(flat * weights).sum(dim=2), (flat.pow(2) * weights).sum(dim=2)]


def _statistic(kind: StyleLossKind, sums: list[torch.Tensor], weight: float) -> torch.Tensor:
    """The style statistic (losses.style_statistic's, or guided_statistic's) from a whole image's
    sums and its positions' ``weight`` (their number, or the sum of the squared guide)."""
    if kind is StyleLossKind.gram:
        return sums[0] / weight
    mean = sums[0] / weight
    variance = (sums[1] / weight - mean.pow(2)).clamp_min(0)
    return torch.stack([mean, (variance + EPS).sqrt()], dim=1)


def _add(totals: dict[str, list[torch.Tensor]], weights: dict[str, float], name: str, kind: StyleLossKind,
         features: torch.Tensor, guide: torch.Tensor | None = None) -> None:
    """Add a tile's features of layer ``name`` to the layer's sums and positions' weight."""
    sums = _sums(kind, features, guide)
    totals[name] = [a + b for a, b in zip(totals[name], sums)] if name in totals else sums
    weight = features.shape[-2] * features.shape[-1] if guide is None else guide.float().pow(2).sum().item()
    weights[name] = weights.get(name, 0) + weight


def tiled_statistics(extractor: FeatureExtractor, image: torch.Tensor, layers: list[str], kind: StyleLossKind,
                     tile: int) -> dict[str, torch.Tensor]:
    """losses.style_statistics of ``image``'s features at ``layers``, computed in tiles (a style
    image larger than the tiles of a tiled run), in float32 as there."""
    margin, deepest = reach(extractor.arch, layers)
    size = (image.shape[-2], image.shape[-1])
    totals: dict[str, list[torch.Tensor]] = {}
    positions: dict[str, float] = {}
    with torch.no_grad():
        for region in plan_tiles(*size, tile, margin, deepest):
            features = extractor(_crop(image, region), set(layers))
            for name in layers:
                _add(totals, positions, name, kind,
                     _inner(features[name], region, layer_stride(extractor.arch, name), size))
    return {name: _statistic(kind, totals[name], positions[name]) for name in layers}


class TiledObjective:
    """ScaleProblem's objective (losses.PerceptualLoss with these targets and ``guides``, a
    --mask at each style layer's size of the whole image) at ``content``'s size, evaluated in
    tiles of ``tile`` pixels; the content targets are kept for each tile."""

    def __init__(self, extractor: FeatureExtractor, config: LossConfig, content: torch.Tensor,
                 style_targets: dict[str, torch.Tensor], tile: int, half: bool,
                 guides: dict[str, torch.Tensor] | None = None) -> None:
        self.extractor, self.config, self.half, self.guides = extractor, config, half, guides
        self.device = next(extractor.parameters()).device
        self.content_weights = content_layer_weights(config)
        self.style_weights = style_layer_weights(config)
        self.targets = {name: style_targets[name].float() for name in self.style_weights}
        layers = [*self.content_weights, *self.style_weights]
        margin, deepest = reach(extractor.arch, layers)
        self.strides = {name: layer_stride(extractor.arch, name) for name in layers}
        self.size = (content.shape[-2], content.shape[-1])
        self.tiles = plan_tiles(*self.size, tile, margin, deepest)
        self.content_targets: list[dict[str, torch.Tensor]] = []
        self.content_norms = dict.fromkeys(self.content_weights, 0.0)
        with torch.no_grad():
            for tile_ in self.tiles:
                # In float32, as ScaleProblem's (the evaluations' features may be bfloat16).
                features = self._features(_crop(content, tile_), tile_, set(self.content_weights), half=False)
                targets = {name: value.float().contiguous() for name, value in features.items()}
                for name, value in targets.items():
                    self.content_norms[name] += value.pow(2).sum().item()
                self.content_targets.append(targets)

    def _features(self, crop: torch.Tensor, tile: Tile, layers: set[str],
                  half: bool | None = None) -> dict[str, torch.Tensor]:
        """The tile's own features of ``layers``, from its ``crop`` of the image."""
        with autocast(self.device, self.half if half is None else half):
            features = self.extractor(crop, layers)
        return {name: _inner(value, tile, self.strides[name], self.size) for name, value in features.items()}

    def _pass(self, image: torch.Tensor, content: bool
              ) -> tuple[dict[str, list[torch.Tensor]], dict[str, float], torch.Tensor]:
        """Pass 1, without gradients: each style layer's sums and positions' weight over the whole image;
        with ``content``, the content error too (else zero)."""
        totals: dict[str, list[torch.Tensor]] = {}
        positions: dict[str, float] = {}
        error = torch.zeros((), device=self.device)
        layers = set(self.strides) if content else set(self.style_weights)
        with torch.no_grad():
            for tile, targets in zip(self.tiles, self.content_targets):
                features = self._features(_crop(image, tile), tile, layers)
                for name in self.style_weights:
                    _add(totals, positions, name, self.config.style_loss, features[name], self._guide(name, tile))
                if content:
                    error = error + self._content_error(features, targets)
        return totals, positions, error

    def _guide(self, name: str, tile: Tile) -> torch.Tensor | None:
        """The tile's part of layer ``name``'s guide (None without a mask)."""
        if self.guides is None:
            return None
        whole = Tile(tile.inner, (0, self.size[0], 0, self.size[1]))  # the guide covers the whole image
        return _inner(self.guides[name], whole, self.strides[name], self.size)

    def _content_error(self, features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """A tile's share of the (unweighted) content loss: its squared error over the whole target's norm."""
        return sum((weight * (features[name].float() - targets[name]).pow(2).sum() / max(self.content_norms[name], EPS)
                    for name, weight in self.content_weights.items()), torch.zeros((), device=self.device))

    def _style(self, totals: dict[str, list[torch.Tensor]], positions: dict[str, float]) -> torch.Tensor:
        """The weighted style loss from the whole image's sums."""
        kind = self.config.style_loss
        return self.config.style_weight * sum(
            weight * relative_error(_statistic(kind, totals[name], max(positions[name], EPS)), self.targets[name])
            for name, weight in self.style_weights.items())

    def value(self, image: torch.Tensor) -> LossParts:
        """The objective at ``image``, without its gradient (one pass over the tiles)."""
        totals, positions, error = self._pass(image.detach(), content=True)
        with torch.no_grad():
            style = self._style(totals, positions)
            tv = self.config.tv_weight * tv_loss(image) if self.config.tv_weight > 0 else image.new_zeros(())
        c = self.config.content_weight * error
        return LossParts(total=c + style + tv, content=c, style=style, tv=tv)

    def _style_slopes(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """Pass 1: the weighted style loss, and its gradient with respect to each layer's sums."""
        totals, positions, _ = self._pass(image, content=False)
        leaves = {name: [t.requires_grad_() for t in sums] for name, sums in totals.items()}
        style = self._style(leaves, positions)
        grads = iter(torch.autograd.grad(style, [t for sums in leaves.values() for t in sums]))
        return style.detach(), {name: [next(grads) for _ in sums] for name, sums in leaves.items()}

    def evaluate(self, image: torch.Tensor) -> LossParts:
        """The objective at ``image`` ([1,3,H,W], a leaf that requires grad); its gradient is
        written into ``image.grad``."""
        style, slopes = self._style_slopes(image.detach())
        gradient = torch.zeros_like(image)
        content = torch.zeros((), device=self.device)
        for tile, targets in zip(self.tiles, self.content_targets):
            crop = _crop(image.detach(), tile).requires_grad_()
            features = self._features(crop, tile, set(self.strides))
            # Pass 2: this tile's share of the style loss's gradient, and of the content loss.
            share = sum(((s * g).sum() for name, slope in slopes.items()
                         for s, g in zip(_sums(self.config.style_loss, features[name], self._guide(name, tile)),
                                         slope)),
                        torch.zeros((), device=self.device))
            error = self._content_error(features, targets)
            (share + self.config.content_weight * error).backward()
            top, bottom, left, right = tile.crop
            gradient[..., top:bottom, left:right] += crop.grad
            content = content + error.detach()
        image.grad = gradient
        tv = image.new_zeros(())
        if self.config.tv_weight > 0:
            tv = self.config.tv_weight * tv_loss(image)
            tv.backward()  # added to the gradient
        c = self.config.content_weight * content
        return LossParts(total=c + style + tv.detach(), content=c, style=style, tv=tv.detach())


def _crop(image: torch.Tensor, tile: Tile) -> torch.Tensor:
    top, bottom, left, right = tile.crop
    return image[..., top:bottom, left:right]
