"""Pixel-domain VIF (Sheikh & Bovik) as piq.vif_p computes it, at every image size the study uses.

The numbers are piq's (its kernels, constants and the order of its special cases; tests compare the
two at >= 41 px). Two things differ: the 2-D gaussians run as separable band-matrix products
(models.filters; piq's normalised 2-D kernel is exactly the outer product of a normalised 1-D
one), several times faster on CPU, and small images use only the finest scales whose valid-padded
windows still fit, where piq refuses anything under 41 px: 4 scales from 41 px, 2 at 32 px, none
below 17 px.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .filters import gaussian_taps, separable_filter

PIQ_SCALES = 4
SIGMA_N_SQ = 2.0
EPS = 1e-8


def _kernel_size(scale: int) -> int:
    return 2 ** (PIQ_SCALES - scale) + 1


def vif_scales(image_size: int) -> int:
    """How many of piq's scales (finest first) fit an image of this size; 0 when none does."""
    size = image_size
    for scale in range(PIQ_SCALES):
        k = _kernel_size(scale)
        if scale > 0:
            size = -(-(size - k + 1) // 2)  # valid blur, then every second pixel
        if size - k + 1 < 1:
            return scale
    return PIQ_SCALES


def _taps(scale: int) -> tuple[float, ...]:
    size = _kernel_size(scale)
    return gaussian_taps(size, size / 5)  # piq: sigma = kernel size / 5


def _luminance(x: Tensor) -> Tensor:
    if x.shape[1] == 3:
        x = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        return x[:, None]
    return x


def vif_p_scales(x: Tensor, y: Tensor, scales: int, data_range: float = 1.0) -> Tensor:
    """piq's pixel VIF over the first `scales` scales; per image (B,). `y` is the reference."""
    x = _luminance(x / float(data_range) * 255)
    y = _luminance(y / float(data_range) * 255)
    x_vif = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    y_vif = torch.zeros_like(x_vif)
    for scale in range(scales):
        taps = _taps(scale)
        if scale > 0:
            x = separable_filter(x, taps, stride=2)
            y = separable_filter(y, taps, stride=2)
        mu_x, mu_y = separable_filter(x, taps), separable_filter(y, taps)
        sigma_x_sq = torch.relu(separable_filter(x * x, taps) - mu_x * mu_x)
        sigma_y_sq = torch.relu(separable_filter(y * y, taps) - mu_y * mu_y)
        sigma_xy = separable_filter(x * y, taps) - mu_x * mu_y

        g = sigma_xy / (sigma_y_sq + EPS)
        sigma_v_sq = sigma_x_sq - g * sigma_xy
        flat_ref = sigma_y_sq < EPS
        g = torch.where(flat_ref, torch.zeros_like(g), g)
        sigma_v_sq = torch.where(flat_ref, sigma_x_sq, sigma_v_sq)
        sigma_y_sq = torch.where(flat_ref, torch.zeros_like(sigma_y_sq), sigma_y_sq)
        flat_x = sigma_x_sq < EPS
        g = torch.where(flat_x, torch.zeros_like(g), g)
        sigma_v_sq = torch.where(flat_x, torch.zeros_like(sigma_v_sq), sigma_v_sq)
        sigma_v_sq = torch.where(g >= 0, sigma_v_sq, sigma_x_sq)
        g = torch.relu(g)
        sigma_v_sq = torch.clamp(sigma_v_sq, min=EPS)

        x_vif = x_vif + torch.log10(1.0 + g**2 * sigma_y_sq / (sigma_v_sq + SIGMA_N_SQ)).sum(dim=(1, 2, 3))
        y_vif = y_vif + torch.log10(1.0 + sigma_y_sq / SIGMA_N_SQ).sum(dim=(1, 2, 3))
    return (x_vif + EPS) / (y_vif + EPS)


def vif_p(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image pixel VIF of prediction `x` against reference `y` (B,); see the module note on sizes."""
    size = min(x.shape[-2:])
    scales = vif_scales(size)
    if scales == 0:
        raise ValueError(f"VIF needs images of at least {_kernel_size(0)} px, got {size} px")
    return vif_p_scales(x, y, scales, data_range)
