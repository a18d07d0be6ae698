"""MlflowTracker against a real local SQLite store."""
from __future__ import annotations

import sqlite3

import pytest

from study.tracking import MlflowTracker


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
