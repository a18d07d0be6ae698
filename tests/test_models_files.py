"""FaceVAE.save / FaceVAE.load: exact round trips, and one clear error naming the file for every bad input."""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict

import pytest
import torch

from models.vae import MODEL_META_FILE, MODEL_WEIGHTS_FILE, FaceVAE, FaceVAEConfig, ModelFileError

CONFIG = FaceVAEConfig(image_size=32, width=0.125, latent_dim=8, use_mask=True)


def _saved(tmp_path, config: FaceVAEConfig = CONFIG):
    torch.manual_seed(0)
    model = FaceVAE(config).eval()
    directory = model.save(tmp_path / "m", {"hypothesis": "l1/mask", "epochs": 3})
    return model, directory


def test_round_trip_is_exact_and_keeps_the_metadata(tmp_path):
    model, directory = _saved(tmp_path)
    assert directory == tmp_path / "m"
    loaded, meta = FaceVAE.load(directory)
    assert loaded.config == model.config and not loaded.training
    assert meta == {"hypothesis": "l1/mask", "epochs": 3}
    assert json.loads((directory / MODEL_META_FILE).read_text())["config"] == asdict(CONFIG)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.predict(x).output, loaded.predict(x).output)
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".")]  # no temp files left


def test_weights_are_plain_cpu_tensors(tmp_path):
    _, directory = _saved(tmp_path)
    state = torch.load(directory / MODEL_WEIGHTS_FILE, weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in state.values())


def test_config_is_a_reserved_metadata_key(tmp_path):
    with pytest.raises(ValueError, match="config"):
        FaceVAE(CONFIG).save(tmp_path / "m", {"config": {}})


def _no_json(directory):
    (directory / MODEL_META_FILE).unlink()


def _bad_json(directory):
    (directory / MODEL_META_FILE).write_text("{not json")


def _no_config(directory):
    (directory / MODEL_META_FILE).write_text(json.dumps({"hypothesis": "l1"}))


def _bad_config(directory):
    (directory / MODEL_META_FILE).write_text(json.dumps({"config": {**asdict(CONFIG), "width": -1}}))


def _unknown_config_key(directory):
    (directory / MODEL_META_FILE).write_text(json.dumps({"config": {**asdict(CONFIG), "depth": 3}}))


def _no_weights(directory):
    (directory / MODEL_WEIGHTS_FILE).unlink()


def _truncated_weights(directory):
    path = directory / MODEL_WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _not_a_state_dict(directory):
    torch.save([torch.zeros(1)], directory / MODEL_WEIGHTS_FILE)


def _other_network(directory):
    other = FaceVAE(FaceVAEConfig(image_size=32, width=0.25, latent_dim=8))
    torch.save(other.state_dict(), directory / MODEL_WEIGHTS_FILE)


@pytest.mark.parametrize(
    ("damage", "file", "reason"),
    [
        (_no_json, MODEL_META_FILE, "not found"),
        (_bad_json, MODEL_META_FILE, "not valid JSON"),
        (_no_config, MODEL_META_FILE, "no 'config'"),
        (_bad_config, MODEL_META_FILE, "width"),
        (_unknown_config_key, MODEL_META_FILE, "depth"),
        (_no_weights, MODEL_WEIGHTS_FILE, "not found"),
        (_truncated_weights, MODEL_WEIGHTS_FILE, "truncated or corrupted"),
        (_not_a_state_dict, MODEL_WEIGHTS_FILE, "not a state dict"),
        (_other_network, MODEL_WEIGHTS_FILE, "do not match"),
    ],
)
def test_every_bad_file_is_named_in_one_line(tmp_path, damage, file, reason):
    _, directory = _saved(tmp_path)
    damage(directory)
    with pytest.raises(ModelFileError) as caught:
        FaceVAE.load(directory)
    message = str(caught.value)
    assert message.startswith(str(directory / file)) and reason in message and "\n" not in message


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    _, directory = _saved(tmp_path)
    monkeypatch.chdir(tmp_path)
    with open(directory / MODEL_WEIGHTS_FILE, "wb") as handle:
        torch.save({"weight": _Payload()}, handle, pickle_module=pickle)
    with pytest.raises(ModelFileError, match="refused"):
        FaceVAE.load(directory)
    assert not (tmp_path / "pwned").exists()
