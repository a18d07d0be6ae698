"""Checkpoints and exported models: exact round-trips, corruption and unsafe pickles refused."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from models.vae import FaceVAE, FaceVAEConfig
from study.training.checkpoint import (
    CheckpointError, export_model, latest_loadable_checkpoint, load_checkpoint, load_model, save_checkpoint,
)


def _model():
    torch.manual_seed(0)
    return FaceVAE(FaceVAEConfig(image_size=32, width=0.125, latent_dim=8, use_mask=True))


def test_checkpoint_round_trip_is_exact(tmp_path):
    model = _model()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32)).output.mean().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "c", model=model, optimizer=optimizer, epoch=3, config_json="{}")
    payload = load_checkpoint(tmp_path / "c")
    assert payload["epoch"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, payload["model"][key])
    restored = torch.optim.Adam(_model().parameters())
    restored.load_state_dict(payload["optimizer"])
    assert restored.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])


def test_exported_model_round_trip_is_exact(tmp_path):
    model = _model().eval()
    export_model(tmp_path / "m", model, {"hypothesis": "l1/mask"})
    loaded, meta = load_model(tmp_path / "m")
    assert meta["hypothesis"] == "l1/mask"
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.predict(x).output, loaded.predict(x).output)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c").mkdir()
    with open(tmp_path / "c" / "checkpoint.pt", "wb") as handle:
        torch.save({"model": _Payload()}, handle, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "c")
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_is_detected_and_the_previous_one_is_used(tmp_path):
    model = _model()
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in (1, 2):
        save_checkpoint(tmp_path / f"epoch-{epoch:05d}", model=model, optimizer=optimizer, epoch=epoch, config_json="{}")
    newest = tmp_path / "epoch-00002" / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="epoch-00002"):
        load_checkpoint(newest)
    payload, skipped = latest_loadable_checkpoint(tmp_path)
    assert payload["epoch"] == 1 and len(skipped) == 1 and "truncated or corrupted" in skipped[0]


def test_a_model_json_from_before_the_one_schema_still_loads(tmp_path):
    """`maskvae train` once wrote the dataset's hash as "dataset"; such a model loads, in today's schema."""
    model = _model().eval()
    export_model(tmp_path / "old", model, {"train_config": {}, "dataset": "abc123", "best_epoch": 2, "image_size": 32})
    loaded, meta = load_model(tmp_path / "old")
    assert meta["dataset_hash"] == "abc123" and "dataset" not in meta and meta["best_epoch"] == 2
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.predict(x).output, loaded.predict(x).output)
