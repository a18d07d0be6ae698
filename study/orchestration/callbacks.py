"""The driver's view of running trials: Tune's callback turned into `TrialRecord` events."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback

from data import storage
from study.search.trials import TrialListener, TrialRecord


def stored_location(fs_path: str, storage_path: str) -> str:
    """A path Ray reports inside its storage (no scheme, no endpoint) as a path or URI any process
    can open: the scheme and endpoint of object storage are taken from the study's storage location."""
    if not storage.is_uri(storage_path):
        return fs_path
    return storage.Location.of(storage_path).sibling_uri(fs_path)


def checkpoint_location(checkpoint, storage_path: str) -> str | None:
    """A Ray checkpoint as a path or URI any process can open (Ray's own `.path` drops the scheme)."""
    if checkpoint is None:
        return None
    return stored_location(checkpoint.path, storage_path)


def _last_lines(text: str) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][-6:])


def error_text(trial, storage_path: str) -> str:
    """The end of a failed trial's error file. Ray writes it into the driver's session directory and
    syncs it beside the trial's results: the first copy is there only in the session that ran the
    trial, so after a resume, in `sync-mlflow` or on another machine the stored copy is read."""
    try:
        path = trial.error_file
        if path and Path(path).exists():
            return _last_lines(Path(path).read_text())
    except Exception:  # no Ray session (status, sync-mlflow): the stored copy below
        pass
    try:
        name = trial.run_metadata.error_filename
        if name and trial.path:
            location = storage.Location.of(stored_location(trial.path, storage_path))
            if location.exists(name):
                return _last_lines(location.read_bytes(name).decode("utf-8", errors="replace"))
    except Exception as error:  # unreadable storage must not hide that the trial failed
        return f"trial failed (its error text in storage could not be read: {error.__class__.__name__})"
    return "trial failed (no error text recorded)"


def record_of(trial, phase: str, storage_path: str, *, status: str | None = None, error: str | None = None,
              history: tuple = ()) -> TrialRecord:
    """The one place a Ray trial becomes a TrialRecord."""
    last = dict(trial.last_result or {})
    status = status or trial.status
    if error is None:
        error = error_text(trial, storage_path) if status == "ERROR" else last.get("failure")
    return TrialRecord(phase=phase, trial_id=trial.trial_id, config=dict(trial.config), status=status,
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
            self.listener.trial_finished(self._record(trial, status="ERROR", error=error_text(trial, self.storage_path)))


class CheckpointPruner(Callback):
    """Keeps the newest `keep` checkpoints of each ended trial, the job Ray's `num_to_keep` would do.

    Ray's `num_to_keep` also forces an experiment snapshot whenever a trial has saved that many
    checkpoints since the last one, so that a snapshot never names a deleted checkpoint. A snapshot
    holds every trial and the searcher, so one per trial grows the driver's cost per trial with the
    study's size. Here snapshots keep Tune's own period ("auto": at most ~5% of the driver's time)
    and a trial's older checkpoints are deleted only `LAG` snapshots after the one that records it as
    ended (Ray uploads a snapshot while the next is due): by then the stored snapshot records it,
    so a resume never looks for them.
    """

    LAG = 2

    def __init__(self, storage_path: str, keep: int = 2):
        self.storage_path = storage_path
        self.keep = keep
        self.ended: list[list[str]] = [[]]

    def __getstate__(self) -> dict[str, Any]:
        return {"storage_path": self.storage_path, "keep": self.keep, "ended": [[]]}

    def _ended(self, trial) -> None:
        if trial.path:
            self.ended[-1].append(stored_location(trial.path, self.storage_path))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial)

    def get_state(self) -> dict[str, Any] | None:
        # Tune asks every callback for its state while it takes a snapshot: the one hook it offers.
        self.ended.append([])
        while len(self.ended) > self.LAG + 1:
            for trial_dir in self.ended.pop(0):
                self.prune(trial_dir)
        return None

    def prune(self, trial_dir: str) -> None:
        try:
            location = storage.Location.of(trial_dir)
            for name in location.names("checkpoint_*")[:-self.keep or None]:
                location.delete_tree(name)
        except Exception:  # disk space, not correctness: a checkpoint left behind is harmless
            pass
