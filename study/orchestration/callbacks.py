"""The driver's view of running trials: Tune's callback turned into `TrialRecord` events."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback

from data import storage
from study.search.trials import TrialListener, TrialRecord


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Final-phase trials carry their settings under "run" (one grid point each); tuning trials are flat."""
    return dict(config["run"]) if "run" in config else dict(config)


def checkpoint_location(checkpoint, storage_path: str) -> str | None:
    """A Ray checkpoint as a path or URI any process can open: Ray's own `.path` drops the scheme
    and endpoint of object storage, so they are taken from the study's storage location."""
    if checkpoint is None:
        return None
    if not storage.is_uri(storage_path):
        return checkpoint.path
    return storage.Location.of(storage_path).sibling_uri(checkpoint.path)


def error_text(trial) -> str:
    """The end of a failed trial's error file; Ray keeps it beside the trial's results."""
    try:
        path = trial.error_file
        if path and Path(path).exists():
            lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
            return "\n".join(lines[-6:])
    except Exception:
        pass
    return "trial failed (no error text recorded)"


def record_of(trial, phase: str, storage_path: str, *, status: str | None = None, error: str | None = None,
              history: tuple = ()) -> TrialRecord:
    """The one place a Ray trial becomes a TrialRecord."""
    last = dict(trial.last_result or {})
    status = status or trial.status
    if error is None:
        error = error_text(trial) if status == "ERROR" else last.get("failure")
    return TrialRecord(phase=phase, trial_id=trial.trial_id, config=flat_config(trial.config), status=status,
                       metrics=last, attempts=trial.num_failures + 1, error=error,
                       checkpoint=checkpoint_location(trial.checkpoint, storage_path), history=history)


class ListenerCallback(Callback):
    def __init__(self, phase: str, listener: TrialListener | None, storage_path: str):
        self.phase = phase
        self.listener = listener
        self.storage_path = storage_path

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the tuner with its callbacks; the listeners (MLflow client, terminal) belong
        # to the driver process and are re-attached on restore.
        return {"phase": self.phase, "listener": None, "storage_path": self.storage_path}

    def _record(self, trial, **kwargs) -> TrialRecord:
        return record_of(trial, self.phase, self.storage_path, **kwargs)

    def on_trial_start(self, iteration, trials, trial, **info):
        if self.listener is not None:
            self.listener.trial_started(self._record(trial, status="RUNNING"))

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self.listener is not None:
            self.listener.trial_started(self._record(trial, status="RUNNING"))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.listener is not None:
            self.listener.trial_result(self._record(trial, status="RUNNING"), dict(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.listener is not None:
            self.listener.trial_finished(self._record(trial, status="TERMINATED"))

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.listener is not None:
            self.listener.trial_finished(self._record(trial, status="ERROR", error=error_text(trial)))
