"""MlflowTracker against a real local SQLite store."""
from __future__ import annotations

import sqlite3

import pytest

from study.tracking.tracker import MlflowTracker


@pytest.fixture()
def tracker(tmp_path) -> MlflowTracker:
    warnings: list[str] = []
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking-test", "study-1", warn=warnings.append)
    tracker.warnings = warnings  # type: ignore[attr-defined]
    return tracker


def test_sqlite_store_is_switched_to_write_ahead_logging(tmp_path, tracker):
    parent = tracker.hypothesis_run("l2/mask", {})
    assert parent is not None
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not tracker.warnings


def test_epochs_are_written_once_per_step_and_reattached_runs_remember_them(tracker):
    parent = tracker.hypothesis_run("l2/mask", {})
    run = tracker.child_run(parent, "l2/mask", "tune:1", "trial", {"lr": 1e-3}, {})
    assert tracker.log_epoch(run, {"epoch": 1.0, "val_objective": 0.5, "note": "text", "bad": float("nan")}, 1)
    assert not tracker.log_epoch(run, {"epoch": 1.0, "val_objective": 0.4}, 1)  # a retried attempt's repeat
    assert tracker.log_epoch(run, {"epoch": 2.0, "val_objective": 0.3}, 2)
    history = tracker.client.get_metric_history(run, "val_objective")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.3)]
    assert "bad" not in tracker.client.get_run(run).data.metrics
    assert tracker.client.get_run(run).data.params == {"lr": "0.001"}

    # A new tracker (a resumed driver) finds the run by its trial key and skips the steps it holds.
    again = MlflowTracker(tracker.uri, tracker.experiment_name, tracker.study_id, warn=tracker.warn)
    assert again.child_run(parent, "l2/mask", "tune:1", "trial", {"lr": 1e-3}, {}) == run
    assert not again.log_epoch(run, {"epoch": 2.0, "val_objective": 0.9}, 2)
    assert again.log_epoch(run, {"epoch": 3.0, "val_objective": 0.2}, 3)
    assert [m.step for m in again.client.get_metric_history(run, "val_objective")] == [1, 2, 3]


def test_an_error_without_a_message_degrades_tracking_instead_of_crashing(tracker, monkeypatch):
    parent = tracker.hypothesis_run("l2/mask", {})
    run = tracker.child_run(parent, "l2/mask", "tune:1", "trial", {}, {})

    def silent_failure(*args, **kwargs):
        raise TimeoutError()

    monkeypatch.setattr(tracker.client, "log_batch", silent_failure)
    assert not tracker.log_epoch(run, {"epoch": 1.0, "val_objective": 0.5}, 1)
    assert tracker.degraded and "TimeoutError" in tracker.warnings[-1]


def test_replay_leaves_live_finished_trials_alone_and_keeps_the_attempt(tracker):
    from study.search.trials import TrialRecord
    from study.tracking.listener import MlflowListener
    from study.tracking.replay import replay_records
    from tests.helpers.mlflow_runs import study_runs

    listener = MlflowListener(tracker, {"l2/mask": tracker.hypothesis_run("l2/mask", {})})
    config = {"hypothesis": "l2/mask", "kl_weight": 1e-3, "lr": 1e-3}

    def record(trial_id: str, attempts: int, status: str = "TERMINATED", history=()) -> TrialRecord:
        return TrialRecord(phase="tune", trial_id=trial_id, config=config, status=status, metrics={"epoch": 1},
                           attempts=attempts, history=history)

    listener.trial_started(record("a", 2, "RUNNING"))
    listener.trial_result(record("a", 2, "RUNNING"), {"epoch": 1, "val_objective": 0.5})
    listener.trial_finished(record("a", 2))

    history = ({"epoch": 1, "val_objective": 0.4},)
    assert replay_records(listener, [record("a", 1, history=history), record("b", 3, history=history)]) == 1
    runs = {r.data.tags["maskvae.trial_key"]: r for r in study_runs(tracker) if "maskvae.trial_key" in r.data.tags}
    assert runs["tune:a"].data.tags["maskvae.attempt"] == "2" and runs["tune:a"].data.metrics["val_objective"] == 0.5
    assert runs["tune:b"].data.tags["maskvae.attempt"] == "3" and runs["tune:b"].info.status == "FINISHED"
    # sync: idempotent
    assert replay_records(MlflowListener(tracker, listener.parents), [record("b", 3, history=history)]) == 1
    assert len(study_runs(tracker)) == len(runs) + 1


def test_replay_ends_failed_and_lost_trials_with_their_recorded_status(tracker):
    from study.search.trials import TrialRecord
    from study.tracking.listener import MlflowListener
    from study.tracking.replay import replay_records
    from tests.helpers.mlflow_runs import study_runs

    listener = MlflowListener(tracker, {"l1/nomask": tracker.hypothesis_run("l1/nomask", {})})
    config = {"hypothesis": "l1/nomask", "kl_weight": 1e-3, "lr": 1e-3}
    records = [
        TrialRecord("tune", "crashed", config, "ERROR", {"epoch": 1}, error="Traceback...\nValueError: boom",
                    history=({"epoch": 1, "val_objective": 0.7},)),
        TrialRecord("tune", "nan", config, "TERMINATED", {"epoch": 1, "failure": "loss became NaN"},
                    error="loss became NaN"),
        TrialRecord("tune", "lost", config, "RUNNING", {"epoch": 1}),
    ]
    assert replay_records(listener, records) == 3
    runs = {r.data.tags["maskvae.trial_id"]: r for r in study_runs(tracker) if "maskvae.trial_id" in r.data.tags}
    assert runs["crashed"].info.status == "FAILED" and "ValueError: boom" in runs["crashed"].data.tags["maskvae.error"]
    assert runs["crashed"].data.metrics["val_objective"] == 0.7
    assert runs["nan"].info.status == "FAILED" and runs["lost"].info.status == "KILLED"


def test_new_trial_runs_cost_no_search(tracker, monkeypatch):
    """The driver's hot path: a study's trial runs are looked up once per tracker, not once per trial."""
    parent = tracker.hypothesis_run("l2/mask", {})
    searches = []
    real_search = tracker.client.search_runs
    monkeypatch.setattr(tracker.client, "search_runs", lambda *a, **k: searches.append(a) or real_search(*a, **k))
    runs = [tracker.child_run(parent, "l2/mask", f"tune:{i}", f"trial {i}", {}, {}) for i in range(30)]
    assert len(set(runs)) == 30 and len(searches) == 1
    tracker.end_run(runs[3], "FINISHED")
    # Re-attaching (a retried trial) finds the run without searching and marks it RUNNING again.
    assert tracker.child_run(parent, "l2/mask", "tune:3", "trial 3", {}, {}) == runs[3]
    assert len(searches) == 1 and tracker.client.get_run(runs[3]).info.status == "RUNNING"
