"""Driver cost per trial as a study grows: the tuning phase's real stack with a stub trainable.

The driver runs what `study.driver.run` runs during tuning: HypothesisSearcher over per-hypothesis
Optuna, PerHypothesisScheduler (ASHA), the study's run and checkpoint settings, and the listeners
(MLflow tracker and listener on SQLite, the trial ledger, the progress printer). Each trial is the
orchestration benchmark's trivial trainable (3 epochs, a checkpoint every epoch), so nearly all the
driver's time is bookkeeping. The driver's CPU time and wall time are read at every `window` finished
trials: a cost that grows with the number of trials shows up as later windows costing more per trial.
"""
from __future__ import annotations

import contextlib
import io
import resource
import tempfile
from pathlib import Path
from typing import Any

from .common import Row, Stopwatch, Target, ratio

NAME = "scale"
TARGET = Target("<=", 1.5)
# Every '+'-combination of the three loss terms (and three reorderings), with and without masks: 20.
LOSSES = ("l1", "l2", "ssim", "l1+l2", "ssim+l1", "ssim+l2", "ssim+l1+l2", "l2+l1", "l1+ssim", "l2+ssim")


def study_config(trials: int, hypotheses: int):
    from benchmarks.orchestration import EPOCHS
    from study.config.loading import load_study_config

    masks = [True, False] if hypotheses > 1 else [True]
    losses = LOSSES[: max(1, hypotheses // len(masks))]
    per_hypothesis = max(1, -(-trials // (len(losses) * len(masks))))
    overrides = [
        "data.path=unused", "data.synthesize_if_missing=null", f"grid.losses=[{', '.join(losses)}]",
        f"grid.masks=[{', '.join(str(m).lower() for m in masks)}]", f"search.trials_per_hypothesis={per_hypothesis}",
        f"train.epochs={EPOCHS}", "scheduler.grace_period=1", "ray.dashboard=false",
    ]
    return load_study_config("smoke", overrides=overrides, check_data=False)


def rss_mib() -> float:
    """The driver's resident memory now (not its peak), from /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Windows:
    """A trial listener that reads the driver's clocks and memory every `size` finished trials."""

    def __init__(self, size: int):
        self.size = size
        self.finished = 0
        self.cpu = Stopwatch(cpu=True)
        self.wall = Stopwatch()
        self.rows: list[dict[str, float]] = []

    def trial_started(self, record) -> None:
        pass

    def trial_result(self, record, result: dict[str, Any]) -> None:
        pass

    def trial_finished(self, record) -> None:
        self.finished += 1
        if self.finished % self.size == 0:
            self.rows.append({"trials": self.finished, "cpu_s_per_trial": self.cpu.lap() / self.size,
                              "wall_s_per_trial": self.wall.lap() / self.size, "rss_mib": rss_mib()})


def drive(trials: int, hypotheses: int, window: int, root: Path) -> tuple[Windows, dict[str, Any]]:
    """One tuning phase of `trials` stub trials, as the driver runs it."""
    from ray import tune

    from benchmarks.orchestration import _with_work
    from study.driver.ledger import TrialLedger
    from study.driver.progress import ProgressPrinter
    from study.orchestration import experiments
    from study.search.trials import Listeners
    from study.tracking.listener import MlflowListener
    from study.tracking.tracker import MlflowTracker

    config = study_config(trials, hypotheses)
    tracker = MlflowTracker(f"sqlite:///{root / 'mlflow.db'}", "bench-scale", "bench", warn=lambda message: None)
    names = [h.name for h in config.hypotheses()]
    parents = {name: tracker.hypothesis_run(name, {}) for name in names}
    windows = Windows(window)
    totals = {f"tune:{name}": config.search.trials_per_hypothesis for name in names}
    listener = Listeners(MlflowListener(tracker, parents), TrialLedger(root / "trials.json", config.objective.metric),
                         ProgressPrinter(totals, config.objective.metric, config.objective.mode), windows)
    trainable = tune.with_parameters(_with_work, work_s=0.0, checkpoint=True)
    storage = root / "ray"
    tuner = experiments.tuning_tuner(config, config.data.path, str(storage), listener, trainable=trainable)
    printed = io.StringIO()  # the printer's line per trial is part of the cost, not of the report
    clock = Stopwatch()
    with contextlib.redirect_stdout(printed):
        grid = tuner.fit()
    experiment = Path(experiments.experiment_path(str(storage), experiments.TUNE_EXPERIMENT))
    snapshot = sorted(experiment.glob("experiment_state-*.json"))
    searcher = sorted(experiment.glob("searcher-state-*.pkl"))
    return windows, {
        "trials": len(grid), "hypotheses": len(names), "wall_s": clock.lap(), "mlflow_degraded": tracker.degraded,
        "errors": sum(1 for result in grid if result.error is not None),
        "experiment_state_kib": snapshot[-1].stat().st_size / 1024 if snapshot else None,
        "searcher_state_kib": searcher[-1].stat().st_size / 1024 if searcher else None,
    }


def measure(trials: int, early: int, window: int, hypotheses: int = 20, num_cpus: int = 2) -> list[Row]:
    """Per-trial driver cost in the window ending at `early` trials against the last window (`trials`)."""
    if not 0 < window <= early < trials or early % window or trials % window:
        raise ValueError(f"expected 0 < window <= early < trials, both multiples of window; got "
                         f"window={window}, early={early}, trials={trials}")
    from study.config.study import RayConfig
    from study.orchestration import cluster, experiments

    with tempfile.TemporaryDirectory(prefix="maskvae-bench-scale-") as scratch:
        experiments.quiet_tune_output()
        cluster.start_ray(RayConfig(num_cpus=num_cpus, dashboard=False))
        try:
            windows, details = drive(trials, hypotheses, window, Path(scratch))
        finally:
            cluster.stop_ray()
    by_count = {row["trials"]: row for row in windows.rows}
    at_early, at_end = by_count.get(early), by_count.get(trials)
    details.update({"window": window, "windows": windows.rows,
                    "rss_mib": {"at_early": at_early and at_early["rss_mib"], "at_end": at_end and at_end["rss_mib"]}})
    rows = []
    for clock, what in (("cpu_s_per_trial", "driver CPU"), ("wall_s_per_trial", "driver wall")):
        late = at_end and at_end[clock]
        base = at_early and at_early[clock]
        rows.append(Row(NAME, f"{what} per trial at trial {trials} (window of {window}), {details['hypotheses']} "
                              "hypotheses, Optuna+ASHA+MLflow+ledger+printer, stub trials",
                        "s/trial", late, base, f"the same at trial {early}",
                        TARGET if clock == "cpu_s_per_trial" else None, ratio(late, base), details=details))
    rows.append(Row(NAME, f"driver memory (RSS) after {trials} trials", "MiB", details["rss_mib"]["at_end"],
                    details["rss_mib"]["at_early"], f"after {early} trials",
                    ratio=ratio(details["rss_mib"]["at_end"], details["rss_mib"]["at_early"])))
    return rows


def run(quick: bool) -> list[Row]:
    return measure(trials=60, early=20, window=20) if quick else measure(trials=2000, early=200, window=100)
