"""The smoke study with everything on a real S3 API (moto's server on loopback, endpoint and
credentials in the environment): the dataset made by `data synth s3://...`, Ray's storage, MLflow's
artifacts. Tuning with one failing trial, a driver SIGKILL, resume, report, optuna_trials.parquet,
model export, the champion and `predict` from it, then `sync-mlflow` into an empty tracking store."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from PIL import Image

from study.cli import main
from tests.studyproc import StudyProcess, mlflow_runs, set_args, study_overrides

pytestmark = pytest.mark.slow

FAILING = "ssim/nomask"
SLOW = "l2/mask"


def _recorded_terminated(storage_path: str) -> int:
    from study.orchestration.experiments import records

    try:
        return sum(record.status == "TERMINATED" for record in records(storage_path, "tune"))
    except Exception:  # no snapshot in the bucket yet
        return 0


def _throttled(predicate, every_s: float = 1.0):
    """Reading Ray's record back from the bucket costs more than the study's poll interval."""
    last = {"t": 0.0, "value": False}

    def check() -> bool:
        if time.monotonic() - last["t"] >= every_s:
            last["t"], last["value"] = time.monotonic(), predicate()
        return last["value"]

    return check


def test_study_on_object_storage_end_to_end(s3, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MASKVAE_DATA_CACHE", str(tmp_path / "cache"))
    data, ray_storage, artifacts = s3.uri("data/faces"), s3.uri("studies/e2e"), s3.uri("mlflow")
    assert main(["data", "synth", data, "--count", "200", "--size", "32", "--no-progress"]) == 0

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study_dir = tmp_path / "study"
    overrides = study_overrides(data, tracking, losses="[l2, ssim]", masks="[true, false]", trials=1, epochs=2,
                                seeds=2, extra=[f"ray.storage_path={ray_storage}", f"mlflow.artifact_location={artifacts}",
                                                "resources.max_failures=0"])
    faults = [{"point": "epoch_start", "phase": "tune", "hypothesis": FAILING, "action": "raise"},
              # One slow trial keeps the study in tuning while the others end and Tune's snapshots
              # (seconds apart) record them; the test kills the driver in that window.
              {"point": "epoch_start", "phase": "tune", "hypothesis": SLOW, "epoch": 2, "action": "sleep",
               "seconds": 40.0}]
    study = StudyProcess(["study", "run", "--out", str(study_dir), *set_args(overrides)], cwd=tmp_path, faults=faults)
    study.wait_for(_throttled(lambda: _recorded_terminated(ray_storage) >= 1), timeout=240,
                   what="a tuning trial recorded complete in the bucket")
    study.kill()
    study.wait(60)
    assert json.loads((study_dir / "study.json").read_text())["phase"] == "tune", "killed while tuning"
    resumed = StudyProcess(["study", "resume", str(study_dir)], cwd=tmp_path, faults=faults[:1])
    assert resumed.wait(400) == 0, resumed.output[-4000:]
    assert json.loads((study_dir / "study.json").read_text())["phase"] == "done"
    assert not list(tmp_path.glob("s3:*")), "nothing went to a local folder named after the URI"

    # Defect 1: the Optuna record is written on object storage too.
    optuna_trials = pd.read_parquet(study_dir / "results" / "optuna_trials.parquet")
    assert sorted(optuna_trials.state) == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    trials = pd.read_parquet(study_dir / "results" / "trials.parquet").set_index("hypothesis")
    # Defect 6: the failed trial keeps its error text through the kill and the resume.
    assert "injected fault" in trials.loc[FAILING, "error"]
    assert (study_dir / "REPORT.md").exists()
    for hypothesis in ("l2-mask", "l2-nomask", "ssim-mask"):
        assert (study_dir / "models" / hypothesis / "model.pt").exists()

    client, runs = mlflow_runs(tracking)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.info.artifact_uri.startswith(f"{artifacts}/") for r in runs)
    # Defect 2: each trial's and final run's images reach its MLflow run, through the bucket.
    for run in runs:
        phase, status = run.data.tags.get("maskvae.phase"), run.info.status
        if phase and status == "FINISHED":
            expected = "samples.png" if phase == "tune" else "reconstructions.png"
            assert expected in [a.path for a in client.list_artifacts(run.info.run_id)], run.info.run_name
    stored = s3.keys("mlflow")
    assert any(key.endswith("/REPORT.md") for key in stored) and any(key.endswith("/model.pt") for key in stored)

    face = tmp_path / "face.png"
    from data.synthetic import render_faces

    Image.fromarray(render_faces(1, 32, seed=5)[0][0]).save(face)
    capsys.readouterr()
    assert main(["predict", "--model", "models:/reliability@champion", str(face), "--out", str(tmp_path / "preds"),
                 "--tracking-uri", tracking]) == 0, capsys.readouterr().err
    # a reconstruction, and a mask when the champion is a mask model
    assert (tmp_path / "preds" / "face_reconstruction.png").is_file()

    # Defect 7 (and 6 again): rebuild the whole MLflow view from Ray's record in the bucket alone.
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    state = json.loads((study_dir / "study.json").read_text())
    state.update(tracking_uri=fresh, parents={})
    (study_dir / "study.json").write_text(json.dumps(state))
    assert main(["study", "sync-mlflow", str(study_dir)]) == 0, capsys.readouterr().err
    client, runs = mlflow_runs(fresh)
    finals = [r for r in runs if r.data.tags.get("maskvae.phase") == "final"]
    assert len(finals) == 6 and all(r.info.status == "FINISHED" for r in finals)
    for run in finals:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_objective")] == [1, 2]
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "injected fault" in failed[0].data.tags["maskvae.error"]
