"""Faults inside trials, on real local Ray with real processes: a trainer that always raises (4),
a loss that turns NaN (5), a corrupted checkpoint (7), and a SIGKILLed worker (1)."""
from __future__ import annotations

import math
import signal

import pandas as pd
import pytest

from tests.studyproc import StudyProcess, checkpoints, mlflow_runs, search_state, set_args, study_overrides, trial_workers

pytestmark = pytest.mark.slow


def _tag(run, key):
    return run.data.tags.get(key)


@pytest.fixture(scope="module")
def faulty_study(tmp_path_factory, synthetic_dataset):
    root = tmp_path_factory.mktemp("faults")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    faults = [
        # (4) every attempt of l2/nomask's first trial raises
        {"point": "epoch_start", "phase": "tune", "hypothesis": "l2/nomask", "index": 0, "action": "raise"},
        # (5) ssim/mask's first trial goes NaN in epoch 2
        {"point": "epoch_start", "phase": "tune", "hypothesis": "ssim/mask", "index": 0, "epoch": 2, "action": "nan"},
        # (7) l2/mask's first trial: its epoch-2 checkpoint is truncated on storage as the worker dies
        {"point": "after_report", "phase": "tune", "hypothesis": "l2/mask", "index": 0, "epoch": 2,
         "action": "corrupt_and_exit", "once": str(root / "corrupted.marker")},
        # every hypothesis's first final seed fails: the champion's first choice is gone
        {"point": "epoch_start", "phase": "final", "seed": 1, "action": "raise"},
    ]
    args = ["study", "run", "--out", str(root / "study"), "--set", "resources.max_failures=1"]
    args += set_args(study_overrides(synthetic_dataset, tracking, losses="[l2, ssim]", trials=2, epochs=3, seeds=2))
    study = StudyProcess(args, cwd=root, faults=faults)
    code = study.wait(600)
    return code, study.output, root / "study", tracking


def test_the_study_completes_despite_the_faults(faulty_study):
    code, output, study_dir, _ = faulty_study
    assert code == 0, output[-4000:]
    trials = pd.read_parquet(study_dir / "results" / "trials.parquet")
    assert trials.groupby("hypothesis").size().to_dict() == {h: 2 for h in ("l2/mask", "l2/nomask", "ssim/mask", "ssim/nomask")}
    assert (study_dir / "REPORT.md").exists()


def test_a_trainer_that_always_raises_ends_error_after_retries(faulty_study):
    code, output, study_dir, tracking = faulty_study
    trials = pd.read_parquet(study_dir / "results" / "trials.parquet")
    failed = trials[(trials.hypothesis == "l2/nomask") & trials.error.notna()]
    assert len(failed) == 1 and failed.iloc[0]["status"] == "FAILED"
    assert "injected fault" in failed.iloc[0]["error"]
    others = trials.drop(failed.index)
    assert others[others.hypothesis != "ssim/mask"].error.isna().all()
    client, runs = mlflow_runs(tracking)
    run = next(r for r in runs if _tag(r, "maskvae.trial_id") == failed.iloc[0]["trial_id"])
    assert run.info.status == "FAILED" and "injected fault" in _tag(run, "maskvae.error")
    assert _tag(run, "maskvae.attempt") == "2"  # max_failures=1: the first try and one retry
    assert "retrying (attempt 2)" in output
    search = search_state(study_dir)
    states = {t.user_attrs["ray_trial_id"]: t.state.name for t in search.studies["l2/nomask"].trials}
    assert states[failed.iloc[0]["trial_id"]] == "FAIL"


def test_a_nan_loss_stops_the_trial_is_never_a_value_and_never_best(faulty_study):
    _, _, study_dir, tracking = faulty_study
    trials = pd.read_parquet(study_dir / "results" / "trials.parquet")
    nan_trial = trials[(trials.hypothesis == "ssim/mask") & trials.error.notna()]
    assert len(nan_trial) == 1 and "non-finite" in nan_trial.iloc[0]["error"]
    trial_id = nan_trial.iloc[0]["trial_id"]
    search = search_state(study_dir)
    optuna_trial = next(t for t in search.studies["ssim/mask"].trials if t.user_attrs["ray_trial_id"] == trial_id)
    assert optuna_trial.state.name == "FAIL" and optuna_trial.values is None
    import json

    best = json.loads((study_dir / "study.json").read_text())["best"]
    assert best["ssim/mask"]["trial_id"] != trial_id and math.isfinite(best["ssim/mask"]["objective"])
    client, runs = mlflow_runs(tracking)
    run = next(r for r in runs if _tag(r, "maskvae.trial_id") == trial_id)
    assert run.info.status == "FAILED" and "non-finite" in _tag(run, "maskvae.error")


def test_a_corrupted_checkpoint_falls_back_to_the_previous_one(faulty_study):
    _, output, study_dir, tracking = faulty_study
    client, runs = mlflow_runs(tracking)
    notes = [r for r in runs if _tag(r, "maskvae.checkpoint_note")]
    assert len(notes) == 1, [r.data.tags for r in runs]
    run = notes[0]
    assert "truncated or corrupted" in _tag(run, "maskvae.checkpoint_note")
    assert "resumed from checkpoint_000000" in _tag(run, "maskvae.checkpoint_note")
    assert run.info.status == "FINISHED" and _tag(run, "maskvae.hypothesis") == "l2/mask"
    starts = [m.value for m in client.get_metric_history(run.info.run_id, "start_epoch")]
    assert 1.0 in starts  # resumed after epoch 1, not from scratch
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
    assert sorted(steps) == [1, 2, 3]  # epoch 2, re-run after the fallback, is logged once
    assert "skipped unreadable checkpoint" in output


def test_a_failed_first_seed_leaves_each_hypothesis_its_next_seed_and_the_champion_a_model(faulty_study):
    import json

    _, _, study_dir, tracking = faulty_study
    state = json.loads((study_dir / "study.json").read_text())
    assert sorted(state["logged_models"]) == sorted(state["parents"])
    for model_json in (study_dir / "models").glob("*/model.json"):
        assert json.loads(model_json.read_text())["train_config"]["seed"] == 2, model_json
    client, _ = mlflow_runs(tracking)
    version = client.get_model_version_by_alias("reliability", "champion")
    artifacts = [a.path for a in client.list_artifacts(version.run_id, "model")]
    assert "model/model.pt" in artifacts and "model/model.json" in artifacts


def test_a_sigkilled_worker_resumes_its_trial_from_the_last_checkpoint(tmp_path, synthetic_dataset):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    slow = [{"point": "epoch_start", "phase": "tune", "hypothesis": "l2/mask", "action": "sleep", "seconds": 2.0}]
    args = ["study", "run", "--out", str(tmp_path / "study"), "--set", "resources.max_concurrent_trials=1"]
    args += set_args(study_overrides(synthetic_dataset, tracking, masks="[true]", trials=1, epochs=4))
    study = StudyProcess(args, cwd=tmp_path, faults=slow)
    study.wait_for(lambda: len(checkpoints(tmp_path / "study")) >= 1, what="the first checkpoint")
    study.wait_for(lambda: len(trial_workers()) == 1, what="a running trial worker")
    victim = trial_workers()[0]
    victim.send_signal(signal.SIGKILL)
    assert study.wait(400) == 0, study.output[-4000:]
    trials = pd.read_parquet(tmp_path / "study" / "results" / "trials.parquet")
    assert len(trials) == 1 and trials.iloc[0]["status"] == "TERMINATED"
    client, runs = mlflow_runs(tracking)
    run = next(r for r in runs if _tag(r, "maskvae.phase") == "tune")
    assert run.info.status == "FINISHED" and _tag(run, "maskvae.attempt") == "2"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
    assert sorted(steps) == [1, 2, 3, 4]  # the first attempt's history is not duplicated
    starts = {m.value for m in client.get_metric_history(run.info.run_id, "start_epoch")}
    assert starts & {1.0, 2.0, 3.0}, starts  # the retry resumed from a checkpoint, not from scratch
