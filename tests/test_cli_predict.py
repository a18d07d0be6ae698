"""`maskvae predict` from any directory, against a real MLflow SQLite store: one-line errors, exit 2,
and nothing created (no output folder, no empty mlflow.db) when an input cannot be used."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study.cli import main

STUDY_NAME = "predict-study"


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny exported mask model, logged to a SQLite store and registered as <study>@champion, plus a
    finished study directory that records that store."""
    import torch
    from mlflow import MlflowClient

    from models.vae import FaceVAE, FaceVAEConfig
    from study.driver.state import StudyState

    root = tmp_path_factory.mktemp("registry")
    torch.manual_seed(0)
    model_dir = FaceVAE(FaceVAEConfig(image_size=32, width=0.125, latent_dim=8)).save(
        root / "exported", {"resize": "squash"})
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("predict", artifact_location=(root / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(STUDY_NAME)
    version = client.create_model_version(STUDY_NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(STUDY_NAME, "champion", version.version)
    study = root / "study"
    StudyState(study_id="s1", name=STUDY_NAME, created="now", config={}, phase="done", tracking_uri=uri).save(study)
    return {"uri": uri, "model_dir": model_dir, "study": study, "run_id": run.info.run_id}


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working directory far from the store, without MLFLOW_TRACKING_URI, holding two faces."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 50, 3), dtype=np.uint8)).save(faces / "a.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(faces / "b.jpg")
    return work, faces


def _refused(argv, capsys, *expected: str) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


def test_the_champion_of_a_study_from_another_directory(registered, elsewhere, capsys):
    work, faces = elsewhere
    out = work / "pred"
    assert main(["predict", "--study", str(registered["study"]), str(faces / "a.png"), str(faces / "b.jpg"),
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png", "a_reconstruction.png", "b_mask.png",
                                                     "b_reconstruction.png"]
    assert Image.open(out / "a_reconstruction.png").size == (32, 32)  # the model's resolution
    assert Image.open(out / "a_mask.png").mode == "L"
    assert "wrote 4 files for 2 images" in capsys.readouterr().out
    assert not (work / "mlflow.db").exists()


def test_tracking_uri_from_the_flag_or_the_environment(registered, elsewhere, monkeypatch):
    import tempfile

    work, faces = elsewhere
    scratch = work / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["predict", "--model", f"models:/{STUDY_NAME}@champion", "--tracking-uri", registered["uri"],
                 str(faces / "a.png"), "--out", "flag"]) == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    assert main(["predict", "--model", f"runs:/{registered['run_id']}/model", str(faces / "a.png"), "--out", "env"]) == 0
    assert (work / "flag" / "a_reconstruction.png").is_file() and (work / "env" / "a_reconstruction.png").is_file()
    assert not (work / "mlflow.db").exists()
    assert not list(scratch.rglob("model.json")), "the downloaded model is not left in the temp directory"


def test_inputs_are_resized_as_the_models_data_was(registered, elsewhere):
    from data.geometry import resize_image
    from study.training.predict import _tensor, model_resize

    _, faces = elsewhere
    assert model_resize({"resize": "squash"}) == "squash"
    assert model_resize({}) == "center_crop"
    assert model_resize({"resize": "squash"}, "center_crop") == "center_crop"
    picture = Image.open(faces / "a.png").convert("RGB")  # 50 x 60: the two modes differ
    squashed = _tensor(picture, 32, "squash")
    assert np.allclose(squashed.permute(1, 2, 0).numpy() * 255, resize_image(picture, 32, "squash"), atol=1e-3)
    assert not np.allclose(squashed, _tensor(picture, 32, "center_crop"))


def test_bad_inputs_are_one_line_errors_and_create_nothing(registered, elsewhere, capsys):
    work, faces = elsewhere
    (faces / "broken.png").write_bytes(b"not an image")
    (faces / "sub").mkdir()
    Image.new("RGB", (20, 20)).save(faces / "sub" / "a.jpg")
    before = _files(faces)
    model = str(registered["model_dir"])
    out = str(work / "pred")
    cases = [
        (["--model", str(work / "no-model"), str(faces / "a.png")], ["--model", "no-model", "no such model directory"]),
        (["--model", str(faces), str(faces / "a.png")], ["--model", "not a model directory"]),
        (["--model", model, str(faces / "broken.png")], ["broken.png", "cannot read image"]),
        (["--model", model, str(faces / "missing.png")], ["missing.png", "no such file"]),
        (["--model", model, str(faces / "a.png"), str(faces / "sub" / "a.jpg")], ["a_reconstruction.png", "sub/a.jpg"]),
        # no store here: MLflow's default would create ./mlflow.db
        (["--model", f"models:/{STUDY_NAME}@champion", str(faces / "a.png")], ["mlflow.db", "does not exist",
                                                                               "MLFLOW_TRACKING_URI"]),
        (["--model", "models:/predict-stdy@champion", "--tracking-uri", registered["uri"], str(faces / "a.png")],
         ["--model models:/predict-stdy@champion", "not found"]),
        (["--model", f"models:/{STUDY_NAME}@champion", "--tracking-uri", "http://127.0.0.1:9", str(faces / "a.png")],
         ["--tracking-uri", "http://127.0.0.1:9", "unreachable"]),
        ([str(faces / "a.png")], ["--model", "--study"]),
    ]
    for args, expected in cases:
        _refused(["predict", *args, "--out", out], capsys, *expected)
        assert not any(work.iterdir()), args  # no output folder, no mlflow.db
        assert _files(faces) == before, args


def test_a_study_without_a_champion_is_named(registered, elsewhere, tmp_path, capsys):
    from study.driver.state import StudyState

    work, faces = elsewhere
    study = tmp_path / "unfinished"
    StudyState(study_id="s2", name="other", created="now", config={}, phase="final",
               tracking_uri=registered["uri"]).save(study)
    _refused(["predict", "--study", str(study), str(faces / "a.png"), "--out", "pred"], capsys,
             "--study", "no champion yet", "maskvae study resume")
    assert not any(work.iterdir())
