"""Losses: hand computations, the KL closed form, the mask loss and mask-restricted gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d
from skimage.metrics import structural_similarity

from models.loss_names import LOSS_NAMES, LOSS_TERMS, loss_components
from models.losses import (
    RECONSTRUCTION_TERMS,
    LossWeights,
    kl_divergence,
    dice_loss,
    loss_terms,
    mask_loss,
    reconstruction_loss,
    ssim_loss_window,
)
from models.vae import FaceVAE, FaceVAEConfig


def _pair(size: int = 16, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.nn.functional.avg_pool2d(torch.rand(batch, 3, size, size, generator=generator), 3, 1, 1)
    pred = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    return pred, target


def _skimage_ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """skimage's Gaussian SSIM: sigma 1.5, an 11-tap window (truncate 3.5) it does not let one change."""
    values = [
        structural_similarity(p.permute(1, 2, 0).double().numpy(), t.permute(1, 2, 0).double().numpy(),
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
                              channel_axis=2)
        for p, t in zip(pred, target)
    ]
    return float(np.mean(values))


def _tf_ssim(pred: torch.Tensor, target: torch.Tensor, filter_size: int) -> float:
    """tf.image.ssim's recipe: normalised Gaussian window (sigma 1.5), valid filtering, K = (0.01, 0.03),
    mean over pixels and channels, then over images."""
    coords = np.arange(filter_size) - (filter_size - 1) / 2
    taps = np.exp(-coords**2 / (2 * 1.5**2))
    window = np.outer(taps, taps) / taps.sum() ** 2
    c1, c2 = 0.01**2, 0.03**2

    def blur(a: np.ndarray) -> np.ndarray:
        return correlate2d(a, window, mode="valid")

    maps = []
    for image_p, image_t in zip(pred.double().numpy(), target.double().numpy()):
        for x, y in zip(image_p, image_t):
            mx, my = blur(x), blur(y)
            vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
            maps.append(((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())
    return float(np.mean(maps))


def test_paper_defaults() -> None:
    assert LossWeights() == LossWeights(ssim=1.0, l1=4.0, l2=100.0, mask=1.0)
    assert LOSS_NAMES == ("l1", "l2", "ssim", "ssim+l1", "ssim+l2")
    assert set(RECONSTRUCTION_TERMS) == {"ssim", "l1", "l2"}


def test_the_loss_grammar_names_exactly_the_implemented_terms() -> None:
    assert set(LOSS_TERMS) == set(RECONSTRUCTION_TERMS)


def test_loss_components() -> None:
    assert loss_components("ssim+l1") == ("ssim", "l1")
    assert loss_components("l2") == ("l2",)
    assert [loss_components(name) for name in LOSS_NAMES]
    for bad in ("ssim+l3", "", "perceptual"):
        with pytest.raises(ValueError, match="known terms") as error:
            loss_components(bad)
        assert "'l1'" in str(error.value) and "'ssim'" in str(error.value)
    with pytest.raises(ValueError, match="repeated"):
        loss_components("l1+l1")


def test_l1_and_l2_by_hand() -> None:
    pred = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    target = torch.tensor([[[[0.5, 0.5], [0.0, 0.75]]]])
    # |d| = 0.5, 0, 1, 0.5 ; d^2 = 0.25, 0, 1, 0.25
    total, parts = reconstruction_loss("l1", pred, target)
    assert parts["rec_l1"].item() == pytest.approx(2.0 / 4)
    assert total.item() == pytest.approx(4.0 * 0.5)
    total, parts = reconstruction_loss("l2", pred, target, LossWeights(l2=3.0))
    assert parts["rec_l2"].item() == pytest.approx(1.5 / 4)
    assert total.item() == pytest.approx(3.0 * 0.375)


def test_the_tf_reference_matches_skimage_at_its_window() -> None:
    pred, target = _pair()
    assert _tf_ssim(pred, target, 11) == pytest.approx(_skimage_ssim(pred, target), abs=1e-6)


def test_ssim_term_uses_the_authors_window_9() -> None:
    pred, target = _pair()
    total, parts = reconstruction_loss("ssim", pred, target)
    expected = 1 - _tf_ssim(pred, target, 9)
    assert parts["rec_ssim"].item() == pytest.approx(expected, abs=1e-5)
    assert total.item() == pytest.approx(expected, abs=1e-5)
    assert 0.05 < expected < 1  # the pair is far enough apart for the comparison to mean something
    assert abs(parts["rec_ssim"].item() - (1 - _tf_ssim(pred, target, 11))) > 1e-3


def test_ssim_loss_window_shrinks_only_below_9_px() -> None:
    assert [ssim_loss_window(side) for side in (144, 32, 9, 8, 7, 1)] == [9, 9, 9, 7, 7, 1]
    pred, target = _pair(size=8)
    _, parts = reconstruction_loss("ssim", pred, target)
    assert parts["rec_ssim"].item() == pytest.approx(1 - _tf_ssim(pred, target, 7), abs=1e-5)


@pytest.mark.parametrize("weights", [LossWeights(), LossWeights(ssim=2.0, l1=0.5, l2=7.0)])
def test_weighted_combinations(weights: LossWeights) -> None:
    pred, target = _pair()
    ssim_term = 1 - _tf_ssim(pred, target, 9)
    l1 = (pred - target).abs().mean().item()
    l2 = ((pred - target) ** 2).mean().item()
    total, parts = reconstruction_loss("ssim+l1", pred, target, weights)
    assert set(parts) == {"rec_ssim", "rec_l1"}
    assert total.item() == pytest.approx(weights.ssim * ssim_term + weights.l1 * l1, abs=1e-4)
    total, parts = reconstruction_loss("ssim+l2", pred, target, weights)
    assert set(parts) == {"rec_ssim", "rec_l2"}
    assert total.item() == pytest.approx(weights.ssim * ssim_term + weights.l2 * l2, abs=1e-4)


def test_reconstruction_is_full_precision_under_autocast() -> None:
    pred, target = _pair(size=32)
    reference, _ = reconstruction_loss("ssim+l2", pred, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result, parts = reconstruction_loss("ssim+l2", pred.bfloat16(), target.bfloat16())
    assert result.dtype == torch.float32
    # bf16 inputs lose precision (~3 digits), the computation itself must not add more
    assert result.item() == pytest.approx(reference.item(), rel=2e-2)
    exact, _ = reconstruction_loss("ssim+l2", pred.bfloat16().float(), target.bfloat16().float())
    assert result.item() == pytest.approx(exact.item(), rel=1e-6)


def test_kl_closed_form() -> None:
    generator = torch.Generator().manual_seed(1)
    mean = torch.randn(3, 5, generator=generator)
    log_scale = 0.5 * torch.randn(3, 5, generator=generator)
    posterior = torch.distributions.Normal(mean, log_scale.exp())
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(posterior, prior).mean()
    assert kl_divergence(mean, log_scale).item() == pytest.approx(expected.item(), rel=1e-5)
    assert kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)).item() == 0.0


def test_kl_matches_monte_carlo() -> None:
    generator = torch.Generator().manual_seed(2)
    mean = torch.tensor([[0.5, -1.0, 0.0], [1.5, 0.2, -0.3]], dtype=torch.float64)
    log_scale = torch.tensor([[-0.5, 0.3, 0.0], [0.1, -1.0, 0.4]], dtype=torch.float64)
    samples = 200_000
    eps = torch.randn(samples, *mean.shape, generator=generator, dtype=torch.float64)
    z = mean + eps * log_scale.exp()
    log_q = -0.5 * eps**2 - log_scale - 0.5 * math.log(2 * math.pi)
    log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    estimate = (log_q - log_p).mean().item()  # over samples, latent dims and batch
    assert kl_divergence(mean, log_scale).item() == pytest.approx(estimate, abs=0.01)


def test_dice_is_the_authors_batch_level_squared_form_by_hand() -> None:
    # Two one-row images: truth [1, 1] and [0, 0], every prediction 0.5.
    prob = torch.full((2, 1, 1, 2), 0.5)
    target = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])
    overlap = 0.5 + 0.5  # sum |T * P|
    total_area = (1 + 1) + 4 * 0.25  # sum T^2 + sum P^2
    expected = 1 - (2 * overlap + 1) / (total_area + 1 + 1e-8)  # = 0.25
    assert dice_loss(prob, target).item() == pytest.approx(expected, rel=1e-6)
    # Averaging per image instead would give (1 - 3/3.5 + 1 - 1/1.5) / 2 = 0.238.
    assert dice_loss(prob, target).item() != pytest.approx(0.5 * ((1 - 3 / 3.5) + (1 - 1 / 1.5)), rel=1e-3)


def test_mask_loss_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    sig = [1 / (1 + math.exp(-v)) for v in (0.0, 2.0, -1.0, 3.0)]
    truth = [1.0, 0.0, 0.0, 1.0]
    bce = -sum(t * math.log(p) + (1 - t) * math.log(1 - p) for p, t in zip(sig, truth)) / 4
    overlap = sum(p * t for p, t in zip(sig, truth))
    squares = sum(p * p for p in sig) + sum(t * t for t in truth)
    dice = 1 - (2 * overlap + 1) / (squares + 1 + 1e-8)
    assert mask_loss(logits, target).item() == pytest.approx(bce + dice, rel=1e-5)


def test_mask_loss_pools_the_whole_batch() -> None:
    logits = torch.tensor([[[[4.0, -4.0]]], [[[-4.0, 4.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]])
    as_one_image = mask_loss(logits.reshape(1, 1, 1, 4), target.reshape(1, 1, 1, 4)).item()
    assert mask_loss(logits, target).item() == pytest.approx(as_one_image, rel=1e-6)
    per_image = [mask_loss(logits[i: i + 1], target[i: i + 1]).item() for i in range(2)]
    assert mask_loss(logits, target).item() != pytest.approx(sum(per_image) / 2, rel=1e-3)


def _masked_setup(use_mask: bool = True):
    torch.manual_seed(0)
    model = FaceVAE(FaceVAEConfig(image_size=32, width=0.125, latent_dim=4, use_mask=use_mask))
    images = torch.rand(2, 3, 32, 32)
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:24, 6:20] = 1
    return model, images, masks


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_reconstruction_gradient_is_zero_outside_the_mask(loss_name: str) -> None:
    model, images, masks = _masked_setup()
    out = model(images, masks)
    out.recon.retain_grad()
    reconstruction, _ = reconstruction_loss(loss_name, out.output, images)
    reconstruction.backward()
    grad = out.recon.grad
    outside = ~masks.expand_as(grad).bool()
    assert torch.count_nonzero(grad[outside]) == 0
    assert torch.count_nonzero(grad[~outside]) > 0


def test_loss_terms_with_mask() -> None:
    model, images, masks = _masked_setup()
    out = model(images, masks)
    weights = LossWeights(mask=2.5)
    terms = loss_terms(out, images, masks, "ssim+l1", kl_weight=0.01, weights=weights)
    assert set(terms) == {"total", "reconstruction", "kl", "mask", "rec_ssim", "rec_l1"}
    reconstruction, _ = reconstruction_loss("ssim+l1", out.output, images, weights)
    assert terms["reconstruction"].item() == pytest.approx(reconstruction.item(), rel=1e-6)
    assert terms["kl"].item() == pytest.approx(kl_divergence(out.mean, out.log_scale).item(), rel=1e-6)
    assert terms["mask"].item() == pytest.approx(mask_loss(out.mask_logits, masks).item(), rel=1e-6)
    expected = terms["reconstruction"] + 0.01 * terms["kl"] + 2.5 * terms["mask"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="mask"):
        loss_terms(out, images, None, "l1", kl_weight=0.01)


def test_loss_terms_without_mask() -> None:
    model, images, masks = _masked_setup(use_mask=False)
    out = model(images, None)
    terms = loss_terms(out, images, masks, "l2", kl_weight=0.5)
    assert terms["mask"].item() == 0.0 and terms["mask"].ndim == 0
    expected = terms["reconstruction"] + 0.5 * terms["kl"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    # the reconstruction sees every pixel of the plain output
    assert terms["rec_l2"].item() == pytest.approx(((out.recon - images) ** 2).mean().item(), rel=1e-6)
