"""Colour helpers for ``--preserve-color`` and ``--match-color``.

Gatys et al. (2016), "Preserving Color in Neural Artistic Style Transfer", keep the photo's
colours in two ways:
- luminance-only transfer (``--preserve-color``): we recombine the stylised luminance (Y of YIQ)
  with the photo's chrominance (I, Q), the variant jcjohnson/neural-style calls original_colors;
- colour histogram matching (``--match-color``): before stylising, the painting's pixels are
  moved by an affine map so that their mean and covariance are the photo's; the painting's
  brushwork then carries the photo's palette.
"""

from __future__ import annotations

import torch

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.59590059, -0.27455667, -0.32134392],
                            [0.21153661, -0.52273617, 0.31119955]])


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """``[B,3,H,W]`` RGB to YIQ."""
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """``[B,3,H,W]`` YIQ to RGB."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ).to(image), image)


def preserve_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance of ``stylized`` with the chrominance of ``content`` (same size), clamped to [0,1]."""
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0.0, 1.0)


def match_color(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``source`` ``[1,3,H,W]`` recoloured so that its pixels' mean and covariance are those of
    ``target`` ``[1,3,h,w]``: x -> A (x - mu_s) + mu_t with A = C_t^(1/2) C_s^(-1/2), from
    symmetric square roots (Gatys et al. 2016, colour histogram matching, which also gives the
    Cholesky factors of Hertzmann et al.'s image analogies as a choice of A). Clamped to [0,1];
    variances below ``eps`` count as ``eps``, so that a flat (grey or one-colour) source stays
    flat instead of dividing by zero."""
    def stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = image.reshape(3, -1).double()
        mean = flat.mean(1, keepdim=True)
        centred = flat - mean
        return centred, mean, centred @ centred.T / flat.shape[1]

    def power(matrix: torch.Tensor, exponent: float) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(matrix)
        return vectors @ torch.diag(values.clamp(min=eps) ** exponent) @ vectors.T

    centred, _, cov_s = stats(source)
    _, mean_t, cov_t = stats(target)
    moved = power(cov_t, 0.5) @ power(cov_s, -0.5) @ centred + mean_t
    return moved.to(source.dtype).reshape(source.shape).clamp(0.0, 1.0)
