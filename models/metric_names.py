"""The evaluation metrics' names, free of torch so analysis can read them without loading a network.

Every metric is lower-is-better; `models.metrics` computes each.
"""
from __future__ import annotations

METRIC_NAMES: tuple[str, ...] = ("one_minus_ssim", "one_minus_ms_ssim", "lpips", "one_minus_vif", "l1_x10", "l2_x10")
CHEAP_METRIC_NAMES: tuple[str, ...] = ("one_minus_ssim", "l1_x10", "l2_x10")
METRIC_LABELS: dict[str, str] = {
    "one_minus_ssim": "1-SSIM",
    "one_minus_ms_ssim": "1-MS-SSIM",
    "lpips": "LPIPS",
    "one_minus_vif": "1-VIF",
    "l1_x10": "10·l1",
    "l2_x10": "10·l2",
}
