"""Evaluation metrics: perfect scores, degradation, regions, reference implementations, LPIPS offline."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import piq
import pytest
import pytorch_msssim
import torch
import torchvision
from skimage.metrics import structural_similarity

from models.metrics import (
    METRIC_NAMES,
    LPIPSUnavailableError,
    MetricSuite,
    cheap_metrics,
    lpips_available,
    lpips_weights_path,
    ms_ssim_settings,
)
from models.ssim import MS_SSIM_WEIGHTS, ms_ssim
from models.vif import vif_p, vif_p_scales, vif_scales
from tests.helpers.lpips_nets import random_backbone_lpips

PAPER_REFERENCE = Path(__file__).resolve().parents[1] / "study" / "analysis" / "paper_reference.csv"


def _faces(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images: structure at several scales, like a downscaled photo."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (0.8 * smooth + 0.2 * torch.rand(batch, 3, size, size, generator=generator)).clamp(0, 1)


def _noisy(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=generator)).clamp(0, 1)


def _blurred(images: torch.Tensor) -> torch.Tensor:
    return torchvision.transforms.functional.gaussian_blur(images, kernel_size=5, sigma=1.5)


def _region(batch: int, size: int) -> torch.Tensor:
    region = torch.zeros(batch, 1, size, size)
    region[:, :, size // 6: 5 * size // 6, size // 4: 3 * size // 4] = 1
    return region


@pytest.fixture()
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    """A torch hub cache with no AlexNet weights in it, whatever this machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert tmp_path in lpips_weights_path().parents
    assert not lpips_available()
    return tmp_path


@pytest.fixture(scope="module")
def suite48() -> MetricSuite:
    return MetricSuite(48, lpips_model=random_backbone_lpips())


@pytest.fixture(scope="module")
def suite32() -> MetricSuite:
    return MetricSuite(32, lpips_model=random_backbone_lpips())


def test_metric_names_match_the_paper_reference_columns() -> None:
    lines = [line for line in PAPER_REFERENCE.read_text().splitlines() if line and not line.startswith("#")]
    header = next(csv.reader(lines))
    assert tuple(header[2:]) == METRIC_NAMES


def test_ms_ssim_settings_follow_the_rule() -> None:
    for size in range(8, 256):
        win, weights = ms_ssim_settings(size)
        scales = len(weights)
        assert win % 2 == 1 and 3 <= win <= 11, size
        assert size > (win - 1) * 2 ** (scales - 1), size
        # the window is the largest that fits at this many scales; more scales would not fit at all
        assert win == 11 or size <= (win + 1) * 2 ** (scales - 1), size
        assert scales == 5 or size <= 2 * 2**scales, size
        if scales == 5:
            assert weights == MS_SSIM_WEIGHTS, size
        else:
            assert sum(weights) == pytest.approx(1.0), size
            ratios = np.array(weights) / np.array(MS_SSIM_WEIGHTS[:scales])
            assert np.allclose(ratios, ratios[0]), size


def test_ms_ssim_settings_at_study_sizes() -> None:
    assert ms_ssim_settings(144) == (9, MS_SSIM_WEIGHTS)
    assert ms_ssim_settings(48) == (3, MS_SSIM_WEIGHTS)
    assert ms_ssim_settings(32)[0] == 3 and len(ms_ssim_settings(32)[1]) == 4


@pytest.mark.parametrize("size", [48, 144])
def test_ms_ssim_matches_pytorch_msssim(size: int) -> None:
    target = _faces(2, size)
    pred = _noisy(target, 0.1)
    win, weights = ms_ssim_settings(size)
    expected = pytorch_msssim.ms_ssim(pred, target, data_range=1.0, win_size=win, weights=list(weights),
                                      size_average=False)
    assert torch.allclose(ms_ssim(pred, target, win, weights), expected, atol=1e-5)


@pytest.mark.parametrize("size", [41, 48, 144])
def test_vif_agrees_with_piq(size: int) -> None:
    """The same computation as piq's: equal in float64; in float32 both round, piq's 2-D kernels more."""
    target = _faces(3, size).double()
    pred = _noisy(target, 0.1)
    expected = piq.vif_p(pred, target, data_range=1.0, reduction="none")
    assert torch.allclose(vif_p_scales(pred, target, 4), expected, rtol=1e-10)
    assert torch.allclose(vif_p(pred, target), expected, rtol=1e-10)
    assert torch.allclose(vif_p(target, target), piq.vif_p(target, target, data_range=1.0, reduction="none"), rtol=1e-10)
    assert torch.allclose(vif_p(pred.float(), target.float()), expected.float(), rtol=1e-5, atol=0)


def test_vif_scales_and_small_images() -> None:
    assert vif_scales(48) == vif_scales(41) == vif_scales(144) == 4
    assert vif_scales(40) == 3 and vif_scales(32) == 2 and vif_scales(17) == 1 and vif_scales(16) == 0
    small = _faces(2, 32)
    assert torch.all(vif_p(_noisy(small, 0.1), small) < vif_p(small, small))
    with pytest.raises(ValueError, match="VIF"):
        vif_p(small[..., :16, :16], small[..., :16, :16])


def test_ssim_agrees_with_skimage(suite48: MetricSuite) -> None:
    target = _faces(1, 48, seed=3)
    pred = _noisy(target, 0.08, seed=4)
    expected = structural_similarity(pred[0].permute(1, 2, 0).double().numpy(),
                                     target[0].permute(1, 2, 0).double().numpy(), gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2)
    assert 1 - suite48(pred, target)["one_minus_ssim"].item() == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("size", [32, 48])
@pytest.mark.parametrize("with_region", [False, True])
def test_identical_images_score_perfectly(size: int, with_region: bool, suite32, suite48) -> None:
    suite = {32: suite32, 48: suite48}[size]
    images = _faces(3, size)
    scores = suite(images, images, _region(3, size) if with_region else None)
    assert tuple(scores) == METRIC_NAMES
    for name in METRIC_NAMES:
        assert scores[name].shape == (3,)
        assert torch.allclose(scores[name], torch.zeros(3), atol=1e-5), (name, scores[name])


@pytest.mark.parametrize("size", [32, 48])
@pytest.mark.parametrize("with_region", [False, True])
@pytest.mark.parametrize("degrade", [_blurred, lambda x: _noisy(x, 0.1)], ids=["blur", "noise"])
def test_degraded_images_score_worse(size: int, with_region: bool, degrade, suite32, suite48) -> None:
    suite = {32: suite32, 48: suite48}[size]
    images = _faces(3, size)
    region = _region(3, size) if with_region else None
    perfect = suite(images, images, region)
    degraded = suite(degrade(images), images, region)
    for name in METRIC_NAMES:
        assert torch.all(degraded[name] > perfect[name] + 1e-4), (name, degraded[name])


def test_more_noise_scores_worse(suite48: MetricSuite) -> None:
    images = _faces(3, 48)
    mild = suite48(_noisy(images, 0.05), images)
    strong = suite48(_noisy(images, 0.2), images)
    for name in METRIC_NAMES:
        assert torch.all(strong[name] > mild[name]), name


def test_region_ignores_the_background(suite48: MetricSuite) -> None:
    images = _faces(2, 48)
    region = _region(2, 48)
    pred = torch.where(region.bool(), images, _noisy(images, 0.3))  # wrong only outside the face
    full = suite48(pred, images)
    inside = suite48(pred, images, region)
    for name in ("l1_x10", "l2_x10", "one_minus_ms_ssim", "one_minus_vif"):
        assert torch.allclose(inside[name], torch.zeros(2), atol=1e-5), name
        assert torch.all(full[name] > 1e-2), name
    # windowed maps see some background near the edge of the region, so less of the error, not none;
    # AlexNet's deep layers are 1-3 px wide at 48 px, so LPIPS localises only coarsely
    assert torch.all(inside["one_minus_ssim"] < 0.7 * full["one_minus_ssim"])
    assert torch.all(inside["lpips"] < full["lpips"])


def test_region_l1_l2_by_hand(suite32: MetricSuite) -> None:
    target = torch.full((1, 3, 32, 32), 0.5)
    pred = target.clone()
    pred[:, :, :16] += 0.2  # top half off by 0.2 everywhere
    region = torch.zeros(1, 1, 32, 32)
    region[:, :, 8:24] = 1  # half of the region lies in the top half
    scores = suite32(pred, target, region)
    assert scores["l1_x10"].item() == pytest.approx(10 * 0.1, rel=1e-5)
    assert scores["l2_x10"].item() == pytest.approx(10 * 0.02, rel=1e-5)


def test_empty_region_is_nan(suite32: MetricSuite) -> None:
    images = _faces(2, 32)
    region = _region(2, 32)
    region[1] = 0
    scores = suite32(_noisy(images, 0.1), images, region)
    for name in ("one_minus_ssim", "lpips", "l1_x10", "l2_x10"):
        assert torch.isfinite(scores[name][0]) and torch.isnan(scores[name][1]), name


def test_batched_equals_one_by_one(suite48: MetricSuite) -> None:
    target = _faces(3, 48)
    pred = _noisy(target, 0.1)
    region = _region(3, 48)
    batched = suite48(pred, target, region)
    for i in range(3):
        single = suite48(pred[i: i + 1], target[i: i + 1], region[i: i + 1])
        for name in METRIC_NAMES:
            assert torch.allclose(batched[name][i], single[name][0], atol=1e-5), name


def test_regions_scored_together_equal_regions_scored_apart(suite48: MetricSuite) -> None:
    target = _faces(3, 48)
    pred = _noisy(target, 0.1)
    regions = {"full": None, "face": _region(3, 48), "top": torch.zeros(3, 1, 48, 48).index_fill_(2, torch.arange(20), 1)}
    together = suite48.score_regions(pred, target, regions)
    assert set(together) == set(regions)
    for name, region in regions.items():
        apart = suite48(pred, target, region)
        for metric in METRIC_NAMES:
            assert torch.equal(together[name][metric], apart[metric]), (name, metric)
    assert not torch.allclose(together["full"]["one_minus_ssim"], together["face"]["one_minus_ssim"])


def test_scores_carry_no_gradient(suite32: MetricSuite) -> None:
    target = _faces(2, 32)
    pred = _noisy(target, 0.1).requires_grad_()
    scores = suite32(pred, target)
    assert not any(value.requires_grad for value in scores.values())


def test_lpips_matches_the_lpips_package(suite48: MetricSuite) -> None:
    target = _faces(2, 48)
    pred = _noisy(target, 0.1)
    model = suite48._lpips
    expected = model(pred, target, normalize=True).flatten()
    assert torch.allclose(suite48(pred, target)["lpips"], expected, rtol=1e-5)
    model.spatial = True  # the package's own per-pixel map (upsampled layers), averaged over regions
    try:
        spatial = model(pred, target, normalize=True)
    finally:
        model.spatial = False
    everywhere = torch.ones(2, 1, 48, 48)
    assert torch.allclose(suite48(pred, target, everywhere)["lpips"], spatial.mean(dim=(1, 2, 3)), rtol=1e-5)
    face = _region(2, 48)
    face_mean = (spatial * face).sum(dim=(1, 2, 3)) / face.sum(dim=(1, 2, 3))
    assert torch.allclose(suite48(pred, target, face)["lpips"], face_mean, rtol=1e-5)


def test_lpips_auto_without_weights_reports_nan(empty_torch_home) -> None:
    suite = MetricSuite(32, lpips="auto")
    assert not suite.lpips_enabled
    images = _faces(2, 32)
    scores = suite(_noisy(images, 0.1), images)
    assert torch.isnan(scores["lpips"]).all()
    assert torch.isfinite(scores["l1_x10"]).all()
    assert torch.isnan(MetricSuite(32, lpips="off")(images, images)["lpips"]).all()


def test_an_injected_lpips_network_is_used_without_the_weights_file(empty_torch_home) -> None:
    network = random_backbone_lpips()
    suite = MetricSuite(32, lpips="require", lpips_model=network)
    assert suite._lpips is network and suite.lpips_enabled
    images = _faces(2, 32)
    assert torch.isfinite(suite(_noisy(images, 0.1), images)["lpips"]).all()
    assert not any(p.requires_grad for p in network.parameters()) and not network.training


def test_lpips_require_without_weights_names_the_file(empty_torch_home) -> None:
    with pytest.raises(LPIPSUnavailableError) as error:
        MetricSuite(32, lpips="require")
    message = str(error.value)
    assert "alexnet-owt-7be5be79.pth" in message
    assert str(lpips_weights_path()) in message
    assert "IMAGENET1K_V1" in message  # how to fetch it on a connected machine


def test_lpips_loads_trunk_weights_from_the_hub_cache(empty_torch_home) -> None:
    """The key mapping from torchvision's AlexNet file into the LPIPS trunk (a random stand-in file)."""
    torch.manual_seed(5)
    # only the convolutional trunk is read; the classifier (~230 MB) is left out of the stand-in
    trunk = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    path = lpips_weights_path()
    path.parent.mkdir(parents=True)
    torch.save(trunk, path)
    suite = MetricSuite(32, lpips="require")
    assert suite.lpips_enabled and MetricSuite(32, lpips="auto").lpips_enabled
    loaded = suite._lpips.net.state_dict()
    assert len(loaded) == 10
    for name, value in loaded.items():
        assert torch.equal(value, trunk["features." + name.split(".", 1)[1]]), name


def test_lpips_rejects_an_unusable_weights_file(empty_torch_home) -> None:
    path = lpips_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(LPIPSUnavailableError, match="not a usable AlexNet weights file"):
        MetricSuite(32, lpips="require")


def test_bad_inputs_are_rejected(suite32: MetricSuite) -> None:
    images = _faces(2, 32)
    with pytest.raises(ValueError, match="lpips"):
        MetricSuite(32, lpips="download")
    with pytest.raises(ValueError, match="lpips"):
        MetricSuite(32, lpips="random-backbone")
    with pytest.raises(ValueError, match="off"):
        MetricSuite(32, lpips="off", lpips_model=random_backbone_lpips())
    with pytest.raises(ValueError, match="image_size=32"):
        suite32(_faces(2, 48), _faces(2, 48))
    with pytest.raises(ValueError, match="target"):
        suite32(images, images[:1])
    with pytest.raises(ValueError, match="region"):
        suite32(images, images, torch.ones(2, 3, 32, 32))


def test_cheap_metrics_agree_with_the_suite(suite32: MetricSuite) -> None:
    target = _faces(2, 32)
    pred = _noisy(target, 0.1)
    cheap = cheap_metrics(pred, target)
    full = suite32(pred, target)
    assert set(cheap) == {"one_minus_ssim", "l1_x10", "l2_x10"}
    for name, value in cheap.items():
        assert torch.allclose(value, full[name]), name
