"""Test-split evaluation and the device plan it shares with training."""
from __future__ import annotations

import pytest
import torch

from models.metrics import METRIC_NAMES, MetricSuite
from study.training.device import plan_device
from study.training.evaluation import REGIONS, evaluate, evaluation_batch_size
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


def test_every_test_image_is_scored_in_both_regions_whatever_the_batching(face_data):
    config = tiny_train_config()
    torch.manual_seed(0)
    model = build_model(config, face_data.image_size)
    suite = MetricSuite(face_data.image_size, lpips_model=random_backbone_lpips())
    default = evaluate(model, face_data, suite)
    small = evaluate(model, face_data, suite, batch_size=7)
    count = face_data.size("test")
    assert len(default) == 2 * count and set(default["region"]) == set(REGIONS)
    for region in REGIONS:
        rows = default[default["region"] == region]
        assert list(rows["image_id"]) == face_data.ids("test")
        assert rows[list(METRIC_NAMES)].notna().all().all()
    merged = default.merge(small, on=["image_id", "region"], suffixes=("", "_small"))
    for name in METRIC_NAMES:
        assert merged[name].to_numpy() == pytest.approx(merged[f"{name}_small"].to_numpy(), rel=1e-4, abs=1e-6)
    # The face region leaves the background out, so the two regions score differently.
    full, face = (default[default["region"] == r]["l2_x10"].to_numpy() for r in REGIONS)
    assert (full != face).any()
