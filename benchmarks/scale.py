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


class Timed:
    """A listener wrapped so that the wall time spent in it is counted (per window, by `Windows`)."""

    def __init__(self, name: str, listener):
        self.name, self.listener, self.seconds = name, listener, 0.0

    def _call(self, method: str, *args) -> None:
        clock = Stopwatch()
        getattr(self.listener, method)(*args)
        self.seconds += clock.lap()

    def trial_started(self, record) -> None:
        self._call("trial_started", record)

    def trial_result(self, record, result) -> None:
        self._call("trial_result", record, result)

    def trial_finished(self, record) -> None:
        self._call("trial_finished", record)


class Windows:
    """A trial listener that reads the driver's clocks and memory every `size` finished trials, and
    how much of the wall time went to each timed listener."""

    def __init__(self, size: int, timed: list[Timed] | None = None):
        self.size = size
        self.finished = 0
        self.cpu = Stopwatch(cpu=True)
        self.wall = Stopwatch()
        self.rows: list[dict[str, float]] = []
        self.timed = timed or []
        self._spent = {t.name: 0.0 for t in self.timed}

    def trial_started(self, record) -> None:
        pass

    def trial_result(self, record, result: dict[str, Any]) -> None:
        pass

    def trial_finished(self, record) -> None:
        self.finished += 1
        if self.finished % self.size == 0:
            row = {"trials": self.finished, "cpu_s_per_trial": self.cpu.lap() / self.size,
                   "wall_s_per_trial": self.wall.lap() / self.size, "rss_mib": rss_mib()}
            for timed in self.timed:
                row[f"{timed.name}_s_per_trial"] = (timed.seconds - self._spent[timed.name]) / self.size
                self._spent[timed.name] = timed.seconds
            self.rows.append(row)


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
    totals = {f"tune:{name}": config.search.trials_per_hypothesis for name in names}
    timed = [Timed("mlflow", MlflowListener(tracker, parents)),
             Timed("ledger", TrialLedger(root / "trials.json", config.objective.metric)),
             Timed("printer", ProgressPrinter(totals, config.objective.metric, config.objective.mode))]
    windows = Windows(window, timed)
    listener = Listeners(*timed, windows)
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


def _mean(rows: list[dict[str, float]], key: str) -> float | None:
    values = [row[key] for row in rows]
    return sum(values) / len(values) if values else None


def measure(trials: int, early: int, window: int, span: int = 2, hypotheses: int = 20, num_cpus: int = 2) -> list[Row]:
    """Per-trial driver cost around trial `early` against the last trials: each the mean over `span`
    windows of `window` trials (the ones starting just before `early`, and the last ones). Tune's
    experiment snapshots come every few seconds and each costs more as the study grows, so a single
    window holds one or none: spans of several windows compare the amortised cost."""
    base_range, late_range = (early - window, early + (span - 1) * window), (trials - span * window, trials)
    if not 0 < window <= early or early % window or trials % window or base_range[1] > late_range[0]:
        raise ValueError(f"expected window <= early, both multiples of window, and the span around early to end "
                         f"before the last {span} windows; got window={window}, early={early}, trials={trials}")
    from study.config.study import RayConfig
    from study.orchestration import cluster, experiments

    with tempfile.TemporaryDirectory(prefix="maskvae-bench-scale-") as scratch:
        experiments.quiet_tune_output()
        cluster.start_ray(RayConfig(num_cpus=num_cpus, dashboard=False))
        try:
            windows, details = drive(trials, hypotheses, window, Path(scratch))
        finally:
            cluster.stop_ray()
    base_rows = [row for row in windows.rows if base_range[0] < row["trials"] <= base_range[1]]
    late_rows = [row for row in windows.rows if late_range[0] < row["trials"] <= late_range[1]]
    by_count = {row["trials"]: row for row in windows.rows}
    at_early, at_end = by_count.get(early), by_count.get(trials)
    details.update({"window": window, "span": span, "windows": windows.rows,
                    "trials_compared": {"early": [base_range[0] + 1, base_range[1]], "late": [late_range[0] + 1, trials]},
                    "rss_mib": {"at_early": at_early and at_early["rss_mib"], "at_end": at_end and at_end["rss_mib"]}})
    rows = []
    for clock, what in (("cpu_s_per_trial", "driver CPU"), ("wall_s_per_trial", "driver wall")):
        late, base = _mean(late_rows, clock), _mean(base_rows, clock)
        rows.append(Row(NAME, f"{what} per trial over trials {late_range[0] + 1}-{trials}, {details['hypotheses']} "
                              "hypotheses, Optuna+ASHA+MLflow+ledger+printer, stub trials",
                        "s/trial", late, base, f"the same over trials {base_range[0] + 1}-{base_range[1]}",
                        TARGET if clock == "cpu_s_per_trial" else None, ratio(late, base), details=details))
    rows.append(Row(NAME, f"driver memory (RSS) after {trials} trials", "MiB", details["rss_mib"]["at_end"],
                    details["rss_mib"]["at_early"], f"after {early} trials",
                    ratio=ratio(details["rss_mib"]["at_end"], details["rss_mib"]["at_early"])))
    return rows


def run(quick: bool) -> list[Row]:
    return measure(trials=80, early=20, window=20) if quick else measure(trials=2000, early=200, window=100)
