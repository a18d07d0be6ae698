"""The paper's evaluation metrics, per image, as the paper reports them (lower is better).

Regions: with `region` (the ground-truth face mask, (B,1,H,W)) l1/l2 and the SSIM and LPIPS maps
are averaged over region pixels only (the SSIM map, being valid-padded, against the region
cropped by half a window). MS-SSIM and VIF have no per-pixel map, so they are computed on both
images with the background set to 0. An image whose region is empty scores NaN.

Fixed per resolution (so numbers at one size are comparable):
- SSIM: gaussian window 11, sigma 1.5 (largest odd size that fits for images under 11 px).
- MS-SSIM: see `ms_ssim_settings`.
- VIF: piq's vif_p (4 scales) at >= 41 px; fewer scales below (see models.vif).
- LPIPS: AlexNet v0.1; NaN when the weights are absent and LPIPS is not required.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from lpips import LPIPS
from torch import Tensor

from .perceptual import (
    LPIPSUnavailableError,
    build_lpips,
    lpips_available,
    lpips_layer_maps,
    lpips_region_scores,
    lpips_weights_path,
    ready_lpips,
)
from .metric_names import CHEAP_METRIC_NAMES, METRIC_NAMES
from .ssim import MS_SSIM_WEIGHTS, ms_ssim, ssim_maps
from .vif import vif_p, vif_scales

__all__ = [
    "METRIC_NAMES",
    "LPIPS_MODES",
    "LPIPSUnavailableError",
    "MetricSuite",
    "cheap_metrics",
    "lpips_available",
    "lpips_weights_path",
    "ms_ssim_settings",
    "ssim_window",
]

SSIM_WINDOW = 11
MS_SSIM_MAX_WINDOW = 11
MS_SSIM_MIN_WINDOW = 3


def ssim_window(image_size: int) -> int:
    """11, or the largest odd window that fits a smaller image."""
    if image_size >= SSIM_WINDOW:
        return SSIM_WINDOW
    if image_size < 3:
        raise ValueError(f"image_size={image_size} is too small for SSIM (needs at least 3 px)")
    return image_size if image_size % 2 else image_size - 1


def ms_ssim_settings(image_size: int) -> tuple[int, tuple[float, ...]]:
    """(window size, scale weights) for MS-SSIM at this resolution.

    Rule: the smaller side must exceed (win - 1) * 2**(scales - 1). Keep the standard 5 scales and
    weights, shrinking the window (odd, 11 down to 3) until that holds; if even a 3-px window does
    not fit, drop the coarsest scale and renormalise the remaining leading weights to sum to 1,
    again trying windows from 11 down. 144 px -> (9, 5 scales), 48 px -> (3, 5), 32 px -> (3, 4).
    """
    for scales in range(len(MS_SSIM_WEIGHTS), 0, -1):
        for win in range(MS_SSIM_MAX_WINDOW, MS_SSIM_MIN_WINDOW - 1, -2):
            if image_size > (win - 1) * 2 ** (scales - 1):
                if scales == len(MS_SSIM_WEIGHTS):
                    return win, MS_SSIM_WEIGHTS
                leading = MS_SSIM_WEIGHTS[:scales]
                return win, tuple(w / sum(leading) for w in leading)
    raise ValueError(f"image_size={image_size} is too small for MS-SSIM (needs more than {MS_SSIM_MIN_WINDOW - 1} px)")


def _region_mean(values: Tensor, region: Tensor | None) -> Tensor:
    """Per-image mean of a (B,1,h,w) map, over all pixels or weighted by `region`."""
    if region is None:
        return values.mean(dim=(1, 2, 3))
    return (values * region).sum(dim=(1, 2, 3)) / region.sum(dim=(1, 2, 3))


def _crop_to(region: Tensor, height: int, width: int) -> Tensor:
    top = (region.shape[-2] - height) // 2
    left = (region.shape[-1] - width) // 2
    return region[..., top: top + height, left: left + width]


def _channel_mean_ssim_map(pred: Tensor, target: Tensor, win: int) -> Tensor:
    return ssim_maps(pred, target, win)[0].mean(1, keepdim=True)


def _ssim_region_score(ssim_map: Tensor, region: Tensor | None) -> Tensor:
    """Per-image mean of a valid-padded (B,1,h,w) SSIM map over the region cropped to the map."""
    cropped = None if region is None else _crop_to(region, *ssim_map.shape[-2:])
    return _region_mean(ssim_map, cropped)


def _abs_error(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).abs().mean(1, keepdim=True)


def _squared_error(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).pow(2).mean(1, keepdim=True)


def _prepare(pred: Tensor, target: Tensor, device: torch.device | str,
             image_size: int | None) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, C, H, W)")
    if image_size is not None and tuple(pred.shape[-2:]) != (image_size, image_size):
        raise ValueError(f"images are {tuple(pred.shape[-2:])} but the metrics were set up for image_size={image_size}")
    # Decoder outputs are in (0, 1) already; degraded test images may not be, and the metrics assume [0, 1].
    pred = pred.detach().to(device=device, dtype=torch.float32).clamp(0, 1)
    target = target.detach().to(device=device, dtype=torch.float32).clamp(0, 1)
    return pred, target


def _prepare_region(region: Tensor | None, pred: Tensor, device: torch.device | str) -> Tensor | None:
    if region is None:
        return None
    expected = (pred.shape[0], 1, *pred.shape[-2:])
    if tuple(region.shape) != expected:
        raise ValueError(f"region must have shape {expected}, got {tuple(region.shape)}")
    return region.detach().to(device=device, dtype=torch.float32)


def cheap_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """1-SSIM, 10*l1, 10*l2 per image (B,): fast enough for every validation epoch."""
    with torch.no_grad(), torch.autocast(device_type=pred.device.type, enabled=False):
        pred, target = _prepare(pred, target, pred.device, None)
        win = ssim_window(min(pred.shape[-2:]))
        return {
            "one_minus_ssim": 1 - _ssim_region_score(_channel_mean_ssim_map(pred, target, win), None),
            "l1_x10": 10 * _region_mean(_abs_error(pred, target), None),
            "l2_x10": 10 * _region_mean(_squared_error(pred, target), None),
        }


LPIPS_MODES: tuple[str, ...] = ("auto", "require", "off")


class MetricSuite:
    """All six paper metrics for images of one resolution.

    lpips: "auto" uses the pretrained LPIPS when the AlexNet weights are present and reports NaN
    otherwise; "require" raises LPIPSUnavailableError now when they are absent; "off" reports NaN.
    lpips_model: an LPIPS network (lpips.LPIPS, AlexNet) to use instead of the pretrained one.
    """

    def __init__(self, image_size: int, device: str | torch.device = "cpu", lpips: str = "auto",
                 lpips_model: LPIPS | None = None) -> None:
        if lpips not in LPIPS_MODES:
            raise ValueError(f"lpips={lpips!r}: expected one of {list(LPIPS_MODES)}")
        if lpips == "off" and lpips_model is not None:
            raise ValueError("lpips='off' and an lpips_model were both given: pass one or the other")
        self.image_size = int(image_size)
        self.device = torch.device(device)
        self.ssim_window = ssim_window(self.image_size)
        self.ms_ssim_window, self.ms_ssim_weights = ms_ssim_settings(self.image_size)
        if vif_scales(self.image_size) == 0:
            raise ValueError(f"image_size={self.image_size} is too small for VIF (needs at least 17 px)")
        if lpips_model is not None:
            self._lpips: LPIPS | None = ready_lpips(lpips_model, self.device)
        elif lpips == "require" or (lpips == "auto" and lpips_available()):
            self._lpips = build_lpips(self.device)  # raises LPIPSUnavailableError when the weights are unusable
        else:
            self._lpips = None
        self.lpips_mode = lpips

    @property
    def lpips_enabled(self) -> bool:
        return self._lpips is not None

    def __call__(self, pred: Tensor, target: Tensor, region: Tensor | None = None) -> dict[str, Tensor]:
        """Per-image scores (B,) for each of METRIC_NAMES, over the full image or the given region."""
        return self.score_regions(pred, target, {"region": region})["region"]

    def score_regions(self, pred: Tensor, target: Tensor,
                      regions: Mapping[str, Tensor | None]) -> dict[str, dict[str, Tensor]]:
        """Per-image scores (B,) for each of METRIC_NAMES in each region (None: the full image).

        SSIM, LPIPS and the error maps are computed once and averaged per region; MS-SSIM and VIF
        have no per-pixel map, so they run on each region's masked images.
        """
        with torch.no_grad(), torch.autocast(device_type=self.device.type, enabled=False):
            pred, target = _prepare(pred, target, self.device, self.image_size)
            regions = {name: _prepare_region(region, pred, self.device) for name, region in regions.items()}
            ssim_map = _channel_mean_ssim_map(pred, target, self.ssim_window)
            abs_error, squared_error = _abs_error(pred, target), _squared_error(pred, target)
            lpips_maps = None if self._lpips is None else lpips_layer_maps(self._lpips, pred, target)
            scores = {}
            for name, region in regions.items():
                if region is None:
                    masked_pred, masked_target = pred, target
                else:
                    masked_pred, masked_target = pred * region, target * region
                if lpips_maps is None:
                    lpips_value = torch.full((pred.shape[0],), float("nan"), device=self.device)
                else:
                    lpips_value = lpips_region_scores(lpips_maps, tuple(pred.shape[-2:]), region)
                scores[name] = {
                    "one_minus_ssim": 1 - _ssim_region_score(ssim_map, region),
                    "one_minus_ms_ssim": 1 - ms_ssim(masked_pred, masked_target, self.ms_ssim_window,
                                                     self.ms_ssim_weights),
                    "lpips": lpips_value,
                    "one_minus_vif": 1 - vif_p(masked_pred, masked_target),
                    "l1_x10": 10 * _region_mean(abs_error, region),
                    "l2_x10": 10 * _region_mean(squared_error, region),
                }
            return scores
