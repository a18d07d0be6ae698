"""Training losses: reconstruction terms (a registry), KL divergence and the mask loss.

A loss name is its terms joined by '+' ("ssim+l1"); each term is weighted by the `LossWeights`
field of the same name, so a new term needs a registry entry and a weight, no new branches.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Iterator

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim
from torch import Tensor

from .loss_names import loss_components
from .vae import VAEOutput

SSIM_LOSS_WINDOW = 9


@dataclass(frozen=True)
class LossWeights:
    """The paper's weights: 1-SSIM x1, l1 x4, l2 x100, mask (BCE + Dice) x1."""

    ssim: float = 1.0
    l1: float = 4.0
    l2: float = 100.0
    mask: float = 1.0


@contextmanager
def full_precision(reference: Tensor) -> Iterator[None]:
    """Switch autocast off: SSIM's E[x^2] - E[x]^2 cancels badly in bf16."""
    with torch.autocast(device_type=reference.device.type, enabled=False):
        yield


def ssim_loss_window(side: int) -> int:
    """9 (the authors' tf.image.ssim filter_size), or the largest odd window that fits a smaller image."""
    if side >= SSIM_LOSS_WINDOW:
        return SSIM_LOSS_WINDOW
    if side < 1:
        raise ValueError(f"images of side {side} px are too small for SSIM")
    return side if side % 2 else side - 1


def _one_minus_ssim(pred: Tensor, target: Tensor) -> Tensor:
    # Gaussian sigma 1.5, K = (0.01, 0.03), valid filtering: tf.image.ssim's defaults as well.
    win = ssim_loss_window(min(pred.shape[-2:]))
    return 1 - _ssim(pred, target, data_range=1.0, size_average=True, win_size=win)


def _l1(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).abs().mean()


def _l2(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).pow(2).mean()


RECONSTRUCTION_TERMS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ssim": _one_minus_ssim,
    "l1": _l1,
    "l2": _l2,
}

DICE_SMOOTH = 1.0
DICE_EPS = 1e-8


def _term_weight(weights: LossWeights, term: str) -> float:
    if term not in {f.name for f in fields(weights)}:
        raise ValueError(f"reconstruction term {term!r} has no weight in {type(weights).__name__}")
    return float(getattr(weights, term))


def reconstruction_loss(name: str, pred: Tensor, target: Tensor,
                        weights: LossWeights = LossWeights()) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the loss's terms, and each term unweighted as "rec_<term>"."""
    terms = loss_components(name)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    with full_precision(pred):
        pred, target = pred.float(), target.float()
        parts = {f"rec_{term}": RECONSTRUCTION_TERMS[term](pred, target) for term in terms}
        total = sum(_term_weight(weights, term) * parts[f"rec_{term}"] for term in terms)
    return total, parts


def kl_divergence(mean: Tensor, log_scale: Tensor) -> Tensor:
    """KL(N(mean, exp(log_scale)^2) || N(0, 1)), averaged over latent dimensions and the batch."""
    with full_precision(mean):
        mean, log_scale = mean.float(), log_scale.float()
        per_dim = 0.5 * (mean.pow(2) + torch.exp(2 * log_scale) - 1 - 2 * log_scale)
    return per_dim.mean()


def dice_loss(prob: Tensor, target: Tensor) -> Tensor:
    """The authors' squared Dice over the whole batch at once (not averaged per image):
    `1 - (2 sum|T*P| + 1) / (sum T^2 + sum P^2 + 1 + 1e-8)`."""
    overlap = (target * prob).abs().sum()
    total_area = (target.square() + prob.square()).sum()
    return 1 - (2 * overlap + DICE_SMOOTH) / (total_area + DICE_SMOOTH + DICE_EPS)


def mask_loss(mask_logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy averaged over every pixel of the batch (Keras's BinaryCrossentropy() reduction)
    plus the batch-level `dice_loss`."""
    if mask_logits.shape != target.shape:
        raise ValueError(f"mask logits {tuple(mask_logits.shape)} and target mask {tuple(target.shape)} differ in shape")
    with full_precision(mask_logits):
        logits, target = mask_logits.float(), target.float()
        # From logits for stability; Keras's probability clip at 1e-7 would only bind on saturated pixels.
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + dice_loss(torch.sigmoid(logits), target)


def loss_terms(out: VAEOutput, images: Tensor, masks: Tensor | None, loss_name: str, kl_weight: float,
               weights: LossWeights = LossWeights()) -> dict[str, Tensor]:
    """All training terms: "total", "reconstruction", "kl" (unweighted), "mask", and "rec_<term>".

    total = reconstruction + kl_weight * kl + weights.mask * mask; the reconstruction compares
    `out.output` (already composed with the mask) to `images`.
    """
    reconstruction, parts = reconstruction_loss(loss_name, out.output, images, weights)
    kl = kl_divergence(out.mean, out.log_scale)
    if out.mask_logits is None:
        mask = torch.zeros((), device=reconstruction.device, dtype=reconstruction.dtype)
    else:
        if masks is None:
            raise ValueError("the model has a mask decoder, so loss_terms needs the ground-truth masks")
        mask = mask_loss(out.mask_logits, masks)
    total = reconstruction + kl_weight * kl + weights.mask * mask
    return {"total": total, "reconstruction": reconstruction, "kl": kl, "mask": mask, **parts}
