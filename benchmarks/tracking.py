"""Tracking: what one trial-epoch costs the driver in MLflow writes, on the local SQLite store.

maskvae writes each epoch's metrics as one `log_batch` (MlflowTracker.log_epoch). The payload is
a real one: the metrics `train()` reports, plus the numbers Ray Tune adds to every result, kept
or dropped exactly as MlflowListener does. The baseline writes the same numbers one `log_metric`
call each, the way `mlflow.log_metric` in a training loop does.
"""
from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Row, Stopwatch, Target, interleaved, median, ratio

NAME = "tracking"
TARGET = Target("<=", 5.0, on="value")
# Tune's own numbers on every result (ray.tune.result): they reach the listener with the trainer's.
TUNE_FIELDS = ("training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
               "iterations_since_restore", "timestamp", "pid", "done")


def epoch_payload() -> dict[str, Any]:
    """One trial-epoch's result as the listener receives it: every trainer metric and Tune's fields."""
    from study.training.trainer import TERM_NAMES

    from models.metrics import CHEAP_METRIC_NAMES

    metrics: dict[str, Any] = {"epoch": 1.0, "val_objective": 0.5, "images_per_s": 1000.0, "epoch_seconds": 1.0,
                               "start_epoch": 0.0, "node_id": "0" * 56, "trial_id": "abc_00001"}
    metrics.update({f"train_{name}": 0.1 for name in TERM_NAMES})
    metrics.update({f"val_{name}": 0.1 for name in (*TERM_NAMES, *CHEAP_METRIC_NAMES)})
    metrics.update({name: 1.0 for name in TUNE_FIELDS})
    metrics["done"] = False
    return metrics


def logged_metrics(payload: dict[str, Any]) -> dict[str, float]:
    """The numbers MlflowListener turns into MLflow metrics."""
    from study.tracking import listener as listeners

    return listeners.numeric_metrics(payload)


def measure(epochs: int, repeats: int) -> list[Row]:
    from study.tracking.tracker import MlflowTracker

    metrics = logged_metrics(epoch_payload())
    with tempfile.TemporaryDirectory(prefix="maskvae-bench-mlflow-") as scratch:
        tracker = MlflowTracker(f"sqlite:///{Path(scratch) / 'mlflow.db'}", "bench-tracking", "bench",
                                warn=lambda message: None)
        parent = tracker.hypothesis_run("l2/mask", {})
        trials = itertools.count(1)

        def per_epoch_ms(write: Callable[[str, dict[str, float], int], None]) -> Callable[[], float]:
            """A sample: one new trial run, `write` timed for each of its epochs (median, ms)."""
            def sample() -> float:
                run = tracker.child_run(parent, "l2/mask", f"tune:{next(trials)}", "trial", {"lr": 1e-3}, {})
                costs = []
                for step in range(1, epochs + 1):
                    clock = Stopwatch()
                    write(run, {**metrics, "epoch": float(step)}, step)
                    costs.append(clock.lap())
                tracker.end_run(run, "FINISHED")
                return median(costs) * 1e3
            return sample

        def one_metric_per_call(run: str, values: dict[str, float], step: int) -> None:
            for key, value in values.items():
                tracker.client.log_metric(run, key, value, timestamp=int(time.time() * 1000), step=step)

        batched, one_by_one = per_epoch_ms(tracker.log_epoch), per_epoch_ms(one_metric_per_call)
        runs = {"one_by_one": one_by_one, "batched": batched}
        interleaved(runs, 1)  # warm-up: SQLAlchemy's compiled statements, SQLite's page cache
        samples = interleaved(runs, repeats)
        degraded = tracker.degraded
    ours, baseline = median(samples["batched"]), median(samples["one_by_one"])
    details = {"metrics_per_epoch": len(metrics), "metric_names": sorted(metrics), "epochs_per_sample": epochs,
               "samples_ms": samples, "store": "sqlite (local file)", "tracker_degraded": degraded}
    return [Row(NAME, f"MLflow cost per trial-epoch ({len(metrics)} metrics, one log_batch)", "ms", ours, baseline,
                "one log_metric per metric", TARGET, ratio(ours, baseline), details=details)]


def run(quick: bool) -> list[Row]:
    return measure(epochs=10, repeats=3) if quick else measure(epochs=20, repeats=5)
