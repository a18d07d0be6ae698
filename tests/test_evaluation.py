"""Test-split evaluation and the device plan it shares with training."""
from __future__ import annotations

import pytest
import torch

from models.metrics import METRIC_NAMES, MetricSuite
from study.training.device import plan_device
from study.training.evaluation import VIEWS, evaluate, evaluation_batch_size
from study.training.trainer import build_model
from tests.conftest import tiny_train_config
from tests.helpers.lpips_nets import random_backbone_lpips


def test_cpu_plan_is_channels_last_unless_the_fast_path_is_off():
    fast, plain = plan_device("cpu"), plan_device("cpu", fast_path=False)
    assert fast.device.type == plain.device.type == "cpu"
    assert fast.channels_last and not plain.channels_last
    assert fast.autocast_dtype is None and plain.autocast_dtype is None  # bf16 is for CUDA only
    image = torch.rand(2, 3, 8, 8)
    assert fast.prepare_input(image).is_contiguous(memory_format=torch.channels_last)
    assert plain.prepare_input(image) is image


def test_evaluation_batches_fit_the_cache_on_cpu():
    assert evaluation_batch_size(32, "cpu") == 128
    assert evaluation_batch_size(48, "cpu") == 56
    assert evaluation_batch_size(144, "cpu") == 6
    assert evaluation_batch_size(1024, "cpu") == 1
    assert evaluation_batch_size(144, "cuda") == evaluation_batch_size(32, "cuda") >= 64


def test_every_test_image_is_scored_in_every_view_whatever_the_batching(face_data):
    config = tiny_train_config()
    torch.manual_seed(0)
    model = build_model(config, face_data.image_size)
    suite = MetricSuite(face_data.image_size, lpips_model=random_backbone_lpips())
    default = evaluate(model, face_data, suite)
    small = evaluate(model, face_data, suite, batch_size=7)
    count = face_data.size("test")
    assert len(default) == len(VIEWS) * count
    assert set(zip(default["view"], default["region"])) == set(VIEWS)
    for view, region in VIEWS:
        rows = default[(default["view"] == view) & (default["region"] == region)]
        assert list(rows["image_id"]) == face_data.ids("test")
        assert rows[list(METRIC_NAMES)].notna().all().all()
    merged = default.merge(small, on=["image_id", "view", "region"], suffixes=("", "_small"))
    for name in METRIC_NAMES:
        assert merged[name].to_numpy() == pytest.approx(merged[f"{name}_small"].to_numpy(), rel=1e-4, abs=1e-6)
    # The face region leaves the background out, so the two regions score differently.
    composed = default[default["view"] == "composed"]
    full, face = (composed[composed["region"] == r]["l2_x10"].to_numpy() for r in ("full", "face"))
    assert (full != face).any()


class _ConstantDecoder(torch.nn.Module):
    """A stand-in network: its decoder always paints `value`; as a mask model it predicts 0.5 on the
    face and 0 elsewhere, so its composed output is half the input on the face."""

    def __init__(self, value: float, mask_model: bool, face: torch.Tensor):
        super().__init__()
        self.value, self.mask_model, self.face = value, mask_model, face

    def predict(self, images):
        from models.vae import VAEOutput, compose

        recon = torch.full_like(images, self.value)
        mask = None
        output = recon
        if self.mask_model:
            mask = 0.5 * self.face
            output = compose(recon, mask, images)
        zeros = torch.zeros(images.shape[0], 1)
        return VAEOutput(recon=recon, mask_logits=None, mask_pred=mask, mean=zeros, log_scale=zeros, z=zeros,
                         output=output)


def test_the_decoder_view_lets_no_input_pixel_in(face_data):
    """A mask model whose decoder outputs a constant, and whose predicted mask lets half the input
    through on the face, scores in the decoder view exactly as the constant does: the composed view
    rewards the pasted input, the decoder view cannot."""
    suite = MetricSuite(face_data.image_size, lpips_model=random_backbone_lpips())
    masks = torch.cat([m for _, m in face_data.batches("test", 1024)])  # one batch: the whole test split
    scores = {}
    for name, mask_model in (("masked", True), ("constant", False)):
        model = _ConstantDecoder(0.4, mask_model, masks)
        scores[name] = evaluate(model, face_data, suite, batch_size=1024)
    decoder = {name: frame[frame["view"] == "decoder"].reset_index(drop=True) for name, frame in scores.items()}
    for metric in METRIC_NAMES:
        assert decoder["masked"][metric].to_numpy() == pytest.approx(decoder["constant"][metric].to_numpy(), abs=1e-7), metric
    composed = {name: frame[(frame["view"] == "composed") & (frame["region"] == "face")] for name, frame in scores.items()}
    assert composed["masked"]["l2_x10"].mean() < composed["constant"]["l2_x10"].mean()


def test_the_combined_grid_shows_the_same_faces_for_every_hypothesis(tmp_path):
    import numpy as np
    from PIL import Image

    from study.training.images import load_rows, save_combined_grid, save_rows

    images = torch.rand(3, 3, 16, 16)
    masked = {"input": images, "output": images * 0.5, "decoder": images * 0.25, "mask": images[:, :1]}
    plain = {"input": images, "output": images * 0.75, "decoder": images * 0.75}
    rows = {h: load_rows(save_rows(r, tmp_path / f"{i}.npz")) for i, (h, r) in enumerate(
        (("l1/mask", masked), ("l1/nomask", plain)))}
    path = save_combined_grid(rows, tmp_path / "combined.png", scale=1)
    grid = np.asarray(Image.open(path))
    # input once, two rows for the mask model, one for the no-mask model, under a title line
    assert grid.shape[0] == 16 + 4 * 16 and grid.shape[1] == 150 + 3 * 16
    first_input_tile = grid[16:32, 150:166]
    assert np.array_equal(first_input_tile, rows["l1/mask"]["input"][0])
