"""Colour-space helpers for ``--preserve-color``.

Gatys et al. (2016), "Preserving Color in Neural Artistic Style Transfer": keep the photo's
colours by transferring luminance only. We recombine the stylised luminance (Y of YIQ) with the
photo's chrominance (I, Q), which is the variant jcjohnson/neural-style calls original_colors.
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
