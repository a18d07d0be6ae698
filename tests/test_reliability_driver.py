"""The driver stops: SIGKILL half-way (2), Ctrl-C / SIGTERM (3); `maskvae study resume` finishes."""
from __future__ import annotations

import json
import re
import signal

import pandas as pd
import pytest

from tests.studyproc import StudyProcess, checkpoints, mlflow_runs, search_state, set_args, study_overrides

pytestmark = pytest.mark.slow


def _start(tmp_path, data, epochs=3, trials=2):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["study", "run", "--out", str(tmp_path / "study")]
    args += set_args(study_overrides(data, tracking, losses="[l2, ssim]", masks="[true]", trials=trials, epochs=epochs))
    slow = [{"point": "epoch_start", "phase": "tune", "action": "sleep", "seconds": 0.7}]
    return StudyProcess(args, cwd=tmp_path, faults=slow), tracking


def _results_per_trial(study_dir):
    """How many results each tuning trial has reported (Ray's own progress files)."""
    counts = {}
    for progress in (study_dir / "ray" / "tune").glob("*/result.json"):
        counts[progress.parent.name] = len([line for line in progress.read_text().splitlines() if line.strip()])
    return counts


def _finished_trials(study_dir, epochs):
    return {name for name, count in _results_per_trial(study_dir).items() if count >= epochs}


def _sections(report):
    return [line for line in report.splitlines() if line.startswith("## ")]


def _assert_complete(study_dir, tracking, trials_per_hypothesis=2):
    assert json.loads((study_dir / "study.json").read_text())["phase"] == "done"
    trials = pd.read_parquet(study_dir / "results" / "trials.parquet")
    assert trials.groupby("hypothesis").size().to_dict() == {"l2/mask": trials_per_hypothesis,
                                                             "ssim/mask": trials_per_hypothesis}
    assert (trials.status == "TERMINATED").all()
    client, runs = mlflow_runs(tracking)
    open_runs = [(r.info.run_name, r.info.status, r.data.tags.get("maskvae.trial_key")) for r in runs
                 if r.info.status not in ("FINISHED", "FAILED", "KILLED")]
    assert not open_runs, open_runs
    keys = [r.data.tags["maskvae.trial_key"] for r in runs if "maskvae.trial_key" in r.data.tags]
    assert len(keys) == len(set(keys)), "a trial's MLflow run was duplicated instead of re-attached"
    # A trial started after Tune's last snapshot is lost with the driver and re-suggested under a
    # new id; its orphaned run must be KILLED, and every recorded trial has exactly one FINISHED run.
    finished = [r.data.tags["maskvae.trial_key"] for r in runs
                if "maskvae.trial_key" in r.data.tags and r.info.status == "FINISHED"]
    assert sorted(k.split(":")[0] for k in finished) == ["final"] * 2 + ["tune"] * (2 * trials_per_hypothesis)
    assert {k.split(":")[1] for k in finished if k.startswith("tune:")} == set(trials.trial_id)
    orphans = [r for r in runs if "maskvae.trial_key" in r.data.tags and r.info.status != "FINISHED"]
    assert all(r.info.status == "KILLED" for r in orphans)
    parents = [r for r in runs if r.data.tags.get("maskvae.role") == "hypothesis"]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in parents)
    for run in runs:
        if run.data.tags.get("maskvae.phase") == "tune":
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
            assert len(steps) == len(set(steps)), "an epoch was logged twice"
    return trials, client, runs


def _recorded_terminated(study_dir) -> set[str]:
    """Trials Tune's saved experiment state records as TERMINATED (empty while none is saved yet)."""
    from study.orchestration.experiments import records

    try:
        return {record.trial_id for record in records(str(study_dir / "ray"), "tune") if record.status == "TERMINATED"}
    except Exception:  # no snapshot yet, or one being replaced
        return set()


def test_driver_sigkill_half_way_then_resume(tmp_path, synthetic_dataset):
    study, tracking = _start(tmp_path, synthetic_dataset)
    study_dir = tmp_path / "study"
    # Tune snapshots its experiment state on its own schedule, behind the trials' result files: wait
    # until a snapshot records a finished trial, so the kill has completed work to preserve.
    study.wait_for(lambda: len(_finished_trials(study_dir, 3)) >= 2 and _recorded_terminated(study_dir),
                   timeout=300, what="half of the trials, recorded")
    study.kill()
    study.wait(60)
    # Completed = what the saved experiment state records as TERMINATED when the driver died.
    terminated = _recorded_terminated(study_dir)
    done_before = {name: count for name, count in _results_per_trial(study_dir).items()
                   if name.rsplit("-", 1)[-1] in terminated}
    assert done_before, "the kill came after at least one trial was recorded complete"
    resumed = StudyProcess(["study", "resume", str(study_dir)], cwd=tmp_path)
    assert resumed.wait(600) == 0, resumed.output[-4000:]
    trials, client, runs = _assert_complete(study_dir, tracking)
    after = _results_per_trial(study_dir)
    for name, count in done_before.items():
        assert after[name] == count, f"completed trial {name} was re-run"
    search = search_state(study_dir)
    for hypothesis, optuna_study in search.studies.items():
        assert [t.state.name for t in optuna_study.trials] == ["COMPLETE", "COMPLETE"], hypothesis
        assert {t.user_attrs["ray_trial_id"] for t in optuna_study.trials} == \
            set(trials[trials.hypothesis == hypothesis].trial_id)
    sections = _sections((study_dir / "REPORT.md").read_text())
    assert any("Ranking: full output" in s for s in sections) and any("face region" in s for s in sections)
    assert any("mask" in s.lower() and "effect" in s.lower() for s in sections) or len(sections) >= 4


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_cleanly_then_resume_completes(tmp_path, synthetic_dataset, signum):
    study, tracking = _start(tmp_path, synthetic_dataset, epochs=3, trials=2)
    study_dir = tmp_path / "study"
    study.wait_for(lambda: len(checkpoints(study_dir)) >= 2, timeout=300, what="two checkpoints")
    study.signal(signum)
    code = study.wait(120)
    assert code == 130, study.output[-3000:]
    assert re.search(rf"maskvae study resume {re.escape(str(study_dir))}", study.output)
    client, runs = mlflow_runs(tracking)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for r in runs)
    assert json.loads((study_dir / "study.json").read_text())["phase"] == "tune"
    resumed = StudyProcess(["study", "resume", str(study_dir)], cwd=tmp_path)
    assert resumed.wait(600) == 0, resumed.output[-4000:]
    _assert_complete(study_dir, tracking)
