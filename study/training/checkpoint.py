"""Checkpoints and exported models: plain tensors + JSON, loaded with weights_only=True.

A checkpoint is a directory holding `checkpoint.pt` (model, optimiser, epoch, RNG state, config as
JSON text). An exported model is a directory holding `model.pt` (state dict) and `model.json`
(everything needed to rebuild the network). Neither ever unpickles code.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from models.files import atomic_torch_save, safe_torch_load as safe_load
from data.manifest import Manifest
from models.vae import FaceVAE, ModelFileError

from study.config.train import TrainConfig


CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
_REQUIRED_KEYS = ("format", "model", "optimizer", "epoch", "rng", "config")


class CheckpointError(RuntimeError):
    """A checkpoint or model file that is missing, truncated, corrupted or unsafe."""

    user_error = True  # bad input: the CLI prints it as one line and exits 2 (study.errors.is_user_error)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_torch_save(obj, path, CheckpointError)


def safe_torch_load(path: Path) -> Any:
    return safe_load(path, CheckpointError)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int, config_json: str, metrics: dict[str, float] | None = None,
                    best: dict[str, Any] | None = None) -> Path:
    """Write one checkpoint directory (atomically) and return it. `best` carries the run's
    best-validation weights so far ({"epoch", "value", "model"}): they are the model a run exports."""
    directory = Path(directory)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": int(epoch),
        "rng": rng_state(),
        "config": config_json,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
    }
    if best is not None:
        payload["best"] = best
    _atomic_torch_save(payload, directory / CHECKPOINT_FILE)
    return directory


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate a checkpoint; `path` is the directory or the file inside it."""
    path = Path(path)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    payload = safe_torch_load(file)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{file}: not a maskvae checkpoint (top level is {type(payload).__name__})")
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{file}: not a maskvae checkpoint (missing {', '.join(missing)})")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{file}: checkpoint format {payload['format']} is not supported (expected {CHECKPOINT_FORMAT})")
    return payload


def checkpoint_dirs(root: Path) -> list[Path]:
    """Checkpoint directories under `root`, oldest first (names sort by epoch)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("epoch-"))


def prune_checkpoints(root: Path, keep: int) -> None:
    for stale in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)


def latest_loadable_checkpoint(root: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """Newest checkpoint under `root` that loads; also the reasons the newer ones were skipped."""
    skipped: list[str] = []
    for directory in reversed(checkpoint_dirs(root)):
        try:
            return load_checkpoint(directory), skipped
        except CheckpointError as error:
            skipped.append(str(error))
    return None, skipped


def model_metadata(config: TrainConfig, manifest: Manifest, best_epoch: int, **extra: Any) -> dict[str, Any]:
    """What `model.json` says besides the network: one schema for `maskvae train` and a final run."""
    return {
        "hypothesis": config.hypothesis, "train_config": config.model_dump(), "dataset_hash": manifest.content_hash,
        "image_size": manifest.image_size, "best_epoch": best_epoch,
        # How the data was resized (None for synthetic faces, rendered square): `predict` resizes inputs alike.
        "resize": manifest.notes.get("resize"), **extra,
    }


def export_model(directory: Path, model: FaceVAE, metadata: dict[str, Any]) -> Path:
    """`FaceVAE.save`, failing with CheckpointError as the rest of this module does."""
    try:
        return model.save(directory, metadata)
    except ModelFileError as error:
        raise CheckpointError(str(error)) from None


def load_model(directory: Path, device: str | torch.device = "cpu") -> tuple[FaceVAE, dict[str, Any]]:
    """`FaceVAE.load`, failing with CheckpointError as the rest of this module does."""
    try:
        model, metadata = FaceVAE.load(directory, device)
    except ModelFileError as error:
        raise CheckpointError(str(error)) from None
    # `maskvae train` once wrote the dataset's hash as "dataset": read in today's schema.
    if "dataset" in metadata and "dataset_hash" not in metadata:
        metadata["dataset_hash"] = metadata.pop("dataset")
    return model, metadata


def best_weights(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The best-validation weights a checkpoint carries and their epoch (the checkpoint's own weights
    for a checkpoint written before best weights were kept)."""
    best = payload.get("best")
    if isinstance(best, dict) and "model" in best:
        return best["model"], int(best["epoch"])
    return payload["model"], int(payload["epoch"])
