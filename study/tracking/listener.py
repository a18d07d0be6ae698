"""The MLflow side of trial events: one nested run per trial or final seed under its hypothesis."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from data import storage
from study.search.trials import Phase, TrialRecord
from study.tracking.tags import ATTEMPT_TAG, CHECKPOINT_NOTE_TAG, ERROR_TAG, NODE_TAG, PHASE_TAG, TRIAL_ID_TAG
from study.tracking.tracker import MlflowTracker

# Images a trial's checkpoint carries that are worth seeing on its run.
CHECKPOINT_IMAGES = ("samples.png", "reconstructions.png")

_PARAMS = ("hypothesis", "kl_weight", "lr", "seed")
# Tune's own bookkeeping is not a metric of the trial: leaving it out keeps each epoch one small write.
_NON_METRICS = {"node_id", "trial_id", "experiment_tag", "date", "hostname", "pid", "checkpoint_dir_name",
                "training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
                "iterations_since_restore", "timestamp", "done", "should_checkpoint"}


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of a trial result that are logged as MLflow metrics (Tune's bookkeeping left out)."""
    return {k: v for k, v in result.items()
            if k not in _NON_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}


class MlflowListener:
    """A nested MLflow run per trial/final seed under its hypothesis's parent run."""

    def __init__(self, tracker: MlflowTracker, parents: dict[str, str | None]):
        self.tracker = tracker
        self.parents = parents
        self.runs: dict[str, str | None] = {}
        self.node_tagged: dict[str, str] = {}
        self.noted: dict[str, str] = {}
        self.finished: set[str] = set()

    def _run(self, record: TrialRecord) -> str | None:
        key = f"{record.phase}:{record.trial_id}"
        if key not in self.runs:
            config = record.config
            name = f"final seed {record.seed}" if record.phase == Phase.FINAL else f"trial {record.trial_id}"
            params = {k: config[k] for k in _PARAMS if k in config}
            self.runs[key] = self.tracker.child_run(self.parents.get(record.hypothesis), record.hypothesis, key, name,
                                                    params, {PHASE_TAG: record.phase, TRIAL_ID_TAG: record.trial_id})
        return self.runs[key]

    def trial_started(self, record: TrialRecord) -> None:
        self.tracker.log_values(self._run(record), tags={ATTEMPT_TAG: record.attempts})

    def trial_result(self, record: TrialRecord, result: dict[str, Any]) -> None:
        run_id = self._run(record)
        metrics = numeric_metrics(result)
        note = result.get("checkpoint_note")
        if note and self.noted.get(run_id) != note:  # repeated in every later epoch's result
            self.noted[run_id] = note
            self.tracker.log_values(run_id, tags={CHECKPOINT_NOTE_TAG: note[:4000]})
        if result.get("failure"):
            return
        if result.get("evaluated"):
            self.tracker.log_values(run_id, metrics={k: v for k, v in metrics.items() if k.startswith("test_")})
        else:
            self.tracker.log_epoch(run_id, metrics, int(result.get("epoch", result.get("training_iteration", 0))))
        node = result.get("node_id")
        if node and self.node_tagged.get(run_id) != node:  # once per run and node, not every epoch
            self.node_tagged[run_id] = node
            self.tracker.log_values(run_id, tags={NODE_TAG: node})

    def trial_finished(self, record: TrialRecord) -> None:
        run_id = self._run(record)
        if record.error:
            self.tracker.log_values(run_id, tags={ERROR_TAG: record.error[-4000:]})
        if record.checkpoint:
            self._log_checkpoint_images(run_id, record.checkpoint)
        self.tracker.end_run(run_id, record.mlflow_status)
        self.finished.add(f"{record.phase}:{record.trial_id}")

    def _log_checkpoint_images(self, run_id: str | None, checkpoint: str) -> None:
        location = storage.Location.of(checkpoint)
        present = [name for name in CHECKPOINT_IMAGES if location.exists(name)]
        if not present:
            return
        if location.local:
            for name in present:
                self.tracker.log_artifacts(run_id, Path(location.join(name)))
            return
        with tempfile.TemporaryDirectory(prefix="maskvae-images-") as scratch:
            for name in present:
                local = Path(scratch) / name
                local.write_bytes(location.read_bytes(name))
                self.tracker.log_artifacts(run_id, local)

    def has_finished(self, phase: str, trial_id: str) -> bool:
        """Whether this listener has ended the trial's run (live, or in an earlier replay)."""
        return f"{phase}:{trial_id}" in self.finished
