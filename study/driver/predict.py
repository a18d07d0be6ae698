"""`maskvae predict`: fetch a logged model (path, runs:/ or models:/ URI), then reconstruct."""
from __future__ import annotations

from pathlib import Path

from study.tracking.store import download_model
from study.training.predict import predict as predict_with


def predict(model_uri: str, images: list[Path], out: Path, tracking_uri: str | None = None) -> list[Path]:
    return predict_with(download_model(model_uri, tracking_uri), images, out)
