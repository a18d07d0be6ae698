"""Shared fixtures: tiny synthetic datasets, tiny configs, CPU only."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """400 synthetic 32 px faces in the prepared format, shared by the session (read-only)."""
    from data.prepare import synthesize

    path = tmp_path_factory.mktemp("data") / "synthetic-32"
    synthesize(path, count=400, size=32, seed=0, progress=False)
    return path


@pytest.fixture(scope="session")
def face_data(synthetic_dataset):
    from data.loader import FaceData

    return FaceData.load(synthetic_dataset)


def tiny_train_config(**overrides):
    from study.config.train import TrainConfig

    values = dict(hypothesis="ssim+l2/mask", epochs=2, batch_size=16, lr=1e-3, kl_weight=1e-3,
                  model={"width": 0.125, "latent_dim": 16}, device="cpu", max_train_batches=4, max_val_batches=2,
                  sample_faces=4)
    values.update(overrides)
    return TrainConfig.model_validate(values)
