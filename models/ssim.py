"""Per-image SSIM maps and MS-SSIM with the conventions of pytorch_msssim.

pytorch_msssim returns only image means (so no region averaging) and its MS-SSIM always assumes
five scales when checking the image size; these functions give maps, per-image values and any
number of scales while computing the same numbers (gaussian window, valid filtering,
K = (0.01, 0.03), ReLU on the contrast terms, 2x2 average downsampling with odd-size padding).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .filters import gaussian_taps, separable_filter

K1, K2 = 0.01, 0.03
WIN_SIGMA = 1.5
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_AVERAGE_PAIR = (0.5, 0.5)


def ssim_maps(x: Tensor, y: Tensor, win_size: int = 11, data_range: float = 1.0) -> tuple[Tensor, Tensor]:
    """SSIM and contrast-structure maps, (B, C, H - win + 1, W - win + 1)."""
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of size {tuple(x.shape[-2:])} are smaller than the SSIM window {win_size}")
    window = gaussian_taps(win_size, WIN_SIGMA)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = separable_filter(x, window), separable_filter(y, window)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_xx = separable_filter(x * x, window) - mu_xx
    sigma_yy = separable_filter(y * y, window) - mu_yy
    sigma_xy = separable_filter(x * y, window) - mu_xy
    cs_map = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map, cs_map


def ms_ssim(x: Tensor, y: Tensor, win_size: int, weights: tuple[float, ...], data_range: float = 1.0) -> Tensor:
    """Per-image MS-SSIM (B,) over len(weights) scales."""
    weights_t = x.new_tensor(weights)
    levels: list[Tensor] = []
    for level in range(len(weights)):
        ssim_map, cs_map = ssim_maps(x, y, win_size, data_range)
        if level < len(weights) - 1:
            levels.append(torch.relu(cs_map.flatten(2).mean(-1)))
            # pytorch_msssim's avg_pool2d(kernel 2, padding = size % 2) as two band products.
            padding = (x.shape[-2] % 2, x.shape[-1] % 2)
            x = separable_filter(x, _AVERAGE_PAIR, stride=2, padding=padding)
            y = separable_filter(y, _AVERAGE_PAIR, stride=2, padding=padding)
        else:
            levels.append(torch.relu(ssim_map.flatten(2).mean(-1)))
    stacked = torch.stack(levels, dim=0)  # (level, B, C)
    return torch.prod(stacked ** weights_t.reshape(-1, 1, 1), dim=0).mean(1)
