"""Driver-side trial listeners: MLflow runs and terminal progress."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from .tracking import MlflowTracker

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

    def _run(self, phase: str, trial_id: str, config: dict[str, Any]) -> str | None:
        key = f"{phase}:{trial_id}"
        if key not in self.runs:
            hypothesis = config["hypothesis"]
            name = f"final seed {config['seed']}" if phase == "final" else f"trial {trial_id}"
            params = {k: config[k] for k in _PARAMS if k in config}
            self.runs[key] = self.tracker.child_run(self.parents.get(hypothesis), hypothesis, key, name, params,
                                                    {"maskvae.phase": phase, "maskvae.trial_id": trial_id})
        return self.runs[key]

    def trial_started(self, phase: str, trial_id: str, config: dict[str, Any], attempt: int) -> None:
        run_id = self._run(phase, trial_id, config)
        self.tracker.log_values(run_id, tags={"maskvae.attempt": attempt})

    def trial_result(self, phase: str, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        run_id = self._run(phase, trial_id, config)
        metrics = numeric_metrics(result)
        note = result.get("checkpoint_note")
        if note and self.noted.get(run_id) != note:  # repeated in every later epoch's result
            self.noted[run_id] = note
            self.tracker.log_values(run_id, tags={"maskvae.checkpoint_note": note[:4000]})
        if result.get("failure"):
            return
        if result.get("evaluated"):
            self.tracker.log_values(run_id, metrics={k: v for k, v in metrics.items() if k.startswith("test_")})
        else:
            self.tracker.log_epoch(run_id, metrics, int(result.get("epoch", result.get("training_iteration", 0))))
        node = result.get("node_id")
        if node and self.node_tagged.get(run_id) != node:  # once per run and node, not every epoch
            self.node_tagged[run_id] = node
            self.tracker.log_values(run_id, tags={"maskvae.node_id": node})

    def trial_finished(self, phase: str, trial_id: str, config: dict[str, Any], status: str, error: str | None,
                       result: dict[str, Any] | None, checkpoint: str | None) -> None:
        run_id = self._run(phase, trial_id, config)
        if error:
            self.tracker.log_values(run_id, tags={"maskvae.error": error[-4000:]})
        if checkpoint:
            for name in ("samples.png", "reconstructions.png"):
                if (Path(checkpoint) / name).exists():
                    self.tracker.log_artifacts(run_id, Path(checkpoint) / name)
        self.tracker.end_run(run_id, status)
        self.finished.add(f"{phase}:{trial_id}")

    def has_finished(self, phase: str, trial_id: str) -> bool:
        """Whether this listener has ended the trial's run (live, or in an earlier replay)."""
        return f"{phase}:{trial_id}" in self.finished


class ProgressPrinter:
    """One line per finished trial, with the hypothesis's tally: progress people can follow."""

    def __init__(self, totals: dict[str, int], metric: str):
        self.totals = totals
        self.metric = metric
        self.done: dict[tuple[str, str], int] = defaultdict(int)
        self.best: dict[tuple[str, str], float] = {}
        self.noted: set[tuple[str, str]] = set()

    def trial_started(self, phase: str, trial_id: str, config: dict[str, Any], attempt: int) -> None:
        if attempt > 1:
            print(f"  [{phase}] {config['hypothesis']} {trial_id}: retrying (attempt {attempt}) from its last checkpoint",
                  flush=True)

    def trial_result(self, phase: str, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        note = result.get("checkpoint_note")
        if note and (phase, trial_id) not in self.noted:
            self.noted.add((phase, trial_id))
            print(f"  [{phase}] {config['hypothesis']} {trial_id}: {note}", flush=True)

    def trial_finished(self, phase: str, trial_id: str, config: dict[str, Any], status: str, error: str | None,
                       result: dict[str, Any] | None, checkpoint: str | None) -> None:
        hypothesis = config["hypothesis"]
        key = (phase, hypothesis)
        self.done[key] += 1
        result = result or {}
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.best[key] = min(self.best.get(key, math.inf), float(value))
        total = self.totals.get(f"{phase}:{hypothesis}", 0)
        overall = sum(n for (p, _), n in self.done.items() if p == phase)
        overall_total = sum(n for k, n in self.totals.items() if k.startswith(f"{phase}:"))
        what = (f"{self.metric} {value:.4f}" if isinstance(value, (int, float)) else "no result") if status != "FAILED" \
            else f"FAILED: {(error or '').splitlines()[-1][:120] if error else ''}"
        epochs = int(result.get("epoch", 0))
        best = self.best.get(key)
        print(f"  [{phase} {overall:>3}/{overall_total}] {hypothesis:<14} {self.done[key]}/{total} "
              f"({epochs} ep) {what}" + (f"  best {best:.4f}" if best is not None else ""), flush=True)
