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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API (moto's server) on 127.0.0.1, shared by the session."""
    from tests.helpers.s3 import S3Server

    server = S3Server(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket, with the endpoint and credentials in this process's environment (and so in
    every process it starts: Ray's workers, study subprocesses)."""
    from tests.helpers.s3 import Bucket

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    return Bucket(s3_server, s3_server.make_bucket())
