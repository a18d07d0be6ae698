"""An LPIPS network that needs no downloaded weights, for exercising the metric plumbing."""
from __future__ import annotations

from lpips import LPIPS

from models.perceptual import calibrated_lpips


def random_backbone_lpips() -> LPIPS:
    """LPIPS-AlexNet v0.1: the package's calibration layers on an untrained trunk (scores are not meaningful)."""
    return calibrated_lpips()
