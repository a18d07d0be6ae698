"""Orchestration overhead per trial: maskvae's study stack against bare, default Ray Tune.

Both sides run the same trivial trainable (a few epochs of a fixed amount of "work", each reported
through `tune.report`) on the same local Ray instance. maskvae's side is the tuning phase as the
study builds it: HypothesisSearcher over per-hypothesis Optuna, PerHypothesisScheduler, actor reuse,
the study's run config, and every event written to MLflow (SQLite) through MlflowListener. Overhead
is wall time minus the trainable's own work spread over the trial slots.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import Row, Stopwatch, Target, ratio

NAME = "orchestration"
TARGET = Target("<=", 0.25)
EPOCHS = 3


def trivial_trainable(config: dict[str, Any]) -> None:
    """Reports EPOCHS epochs; `work_s` of sleep per epoch stands in for training.

    With `checkpoint`, every epoch also reports a one-file checkpoint, as maskvae's trainables do.
    """
    from ray import tune

    work = float(config.get("work_s", 0.0))
    inside = 0.0
    with tempfile.TemporaryDirectory(prefix="maskvae-bench-trivial-") as scratch:
        for epoch in range(1, EPOCHS + 1):
            started = time.perf_counter()
            if work:
                time.sleep(work)
            # A score that depends on the suggestion (Optuna gets a signal) and improves every epoch.
            score = float(config.get("lr", config.get("x", 0.5))) + 1.0 / epoch
            checkpoint = None
            if config.get("checkpoint"):
                directory = Path(scratch) / f"epoch-{epoch}"
                directory.mkdir()
                (directory / "state.txt").write_text(f"{epoch} {score}")
                checkpoint = tune.Checkpoint.from_directory(str(directory))
            inside += time.perf_counter() - started
            tune.report({"epoch": epoch, "val_objective": score, "work_s": inside}, checkpoint=checkpoint)


@dataclass
class Fit:
    wall_s: float
    work_s: float
    trials: int
    slots: int

    @property
    def overhead_per_trial(self) -> float:
        return max(self.wall_s - self.work_s / self.slots, 0.0) / max(self.trials, 1)


def _work(grid) -> tuple[float, int]:
    results = [r for r in grid if r.metrics]
    return sum(float(r.metrics.get("work_s", 0.0)) for r in results), len(grid)


def bare_tune(trials: int, work_s: float, checkpoint: bool, storage: Path) -> Fit:
    """Ray Tune's defaults (no actor reuse, basic variant generation, FIFO); only its output is silenced."""
    from ray import tune

    tuner = tune.Tuner(
        trivial_trainable,
        param_space={"x": tune.uniform(0.0, 1.0), "work_s": work_s, "checkpoint": checkpoint},
        tune_config=tune.TuneConfig(num_samples=trials, metric="val_objective", mode="min"),
        run_config=tune.RunConfig(name="bare", storage_path=str(storage), verbose=0),
    )
    clock = Stopwatch()
    grid = tuner.fit()
    wall = clock.lap()
    work, count = _work(grid)
    return Fit(wall, work, count, _slots())


def study_config(trials: int, hypotheses: int = 10):
    """The smoke preset with the grid and trial count set so that `trials` trials are spread evenly."""
    from study.config.loading import load_study_config
    from models.loss_names import LOSS_NAMES

    losses = list(LOSS_NAMES)
    masks = [True, False] if hypotheses > len(losses) else [True]
    losses = losses[: max(1, -(-hypotheses // len(masks)))]
    per_hypothesis = max(1, -(-trials // (len(losses) * len(masks))))
    overrides = [
        "data.path=unused", "data.synthesize_if_missing=null", f"grid.losses=[{', '.join(losses)}]",
        f"grid.masks=[{', '.join(str(m).lower() for m in masks)}]", f"search.trials_per_hypothesis={per_hypothesis}",
        f"train.epochs={EPOCHS}", f"scheduler.grace_period={EPOCHS}", "ray.dashboard=false",
    ]
    return load_study_config("smoke", overrides=overrides, check_data=False)


def maskvae_stack(trials: int, work_s: float, checkpoint: bool, storage: Path,
                  tracking_uri: str) -> tuple[Fit, dict[str, float]]:
    """The tuning phase as study.driver.run builds it, with the trivial trainable in place of the trainer."""
    from ray import tune

    from study.orchestration import experiments
    from study.search.trials import Listeners
    from study.tracking.listener import MlflowListener
    from study.tracking.tracker import MlflowTracker

    config = study_config(trials, hypotheses=min(10, trials))
    tracker = MlflowTracker(tracking_uri, "bench-orchestration", "bench", warn=lambda message: None)
    setup = Stopwatch()
    parents = {h.name: tracker.hypothesis_run(h.name, {}) for h in config.hypotheses()}
    setup_s = setup.lap()
    listener = Listeners(MlflowListener(tracker, parents))
    trainable = tune.with_parameters(_with_work, work_s=work_s, checkpoint=checkpoint)
    tuner = experiments.tuning_tuner(config, config.data.path, str(storage), listener, trainable=trainable)
    clock = Stopwatch()
    grid = tuner.fit()
    wall = clock.lap()
    work, count = _work(grid)
    logged = len(tracker.client.search_runs([tracker.experiment_id], max_results=10000)) - len(parents)
    return Fit(wall, work, count, _slots()), {"mlflow_runs": float(logged), "mlflow_setup_s": setup_s,
                                              "mlflow_degraded": float(tracker.degraded)}


def _with_work(config: dict[str, Any], work_s: float, checkpoint: bool) -> None:
    trivial_trainable({**config, "work_s": work_s, "checkpoint": checkpoint})


def _slots() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def measure(trials: int, bare_trials: int, checkpoint: bool = True, work_s: float = 0.005,
            num_cpus: int = 2) -> list[Row]:
    """maskvae's `trials` trials, bracketed by two halves of `bare_trials` bare trials (before and after)."""
    if trials < 1 or bare_trials < 1:
        raise ValueError(f"trials and bare_trials: expected positive integers, got {trials} and {bare_trials}")
    from study.orchestration import cluster, experiments
    from study.config.study import RayConfig

    with tempfile.TemporaryDirectory(prefix="maskvae-bench-orch-") as scratch:
        root = Path(scratch)
        # Both sides print the same (nothing): Tune's console output is not what is measured.
        experiments.quiet_tune_output()
        cluster.start_ray(RayConfig(num_cpus=num_cpus, dashboard=False))
        try:
            halves = [bare_trials // 2, bare_trials - bare_trials // 2]
            before = bare_tune(halves[0], work_s, checkpoint, root / "bare-before") if halves[0] else None
            ours, extra = maskvae_stack(trials, work_s, checkpoint, root / "ours", f"sqlite:///{root / 'mlflow.db'}")
            after = bare_tune(halves[1], work_s, checkpoint, root / "bare-after")
        finally:
            cluster.stop_ray()
    sides = [fit for fit in (before, after) if fit is not None]
    bare = Fit(sum(f.wall_s for f in sides), sum(f.work_s for f in sides), sum(f.trials for f in sides), after.slots)
    details = {
        "trials": {"maskvae": ours.trials, "bare": bare.trials},
        "wall_s": {"maskvae": ours.wall_s, "bare": bare.wall_s},
        "work_s": {"maskvae": ours.work_s, "bare": bare.work_s}, "slots": ours.slots, "epochs_per_trial": EPOCHS,
        "checkpoint_every_epoch": checkpoint,
        "bare_overhead_per_trial": {"before": before.overhead_per_trial if before else None,
                                    "after": after.overhead_per_trial}, **extra,
    }
    what = "checkpoint every epoch, " if checkpoint else ""
    return [Row(NAME, f"overhead per trivial trial ({ours.trials} trials, {EPOCHS} epochs, {what}Optuna+ASHA+MLflow)",
                "s/trial", ours.overhead_per_trial, bare.overhead_per_trial, "bare Ray Tune, default settings", TARGET,
                ratio(ours.overhead_per_trial, bare.overhead_per_trial), details=details)]


def run(quick: bool) -> list[Row]:
    # Bare Tune's per-trial cost is one actor start each, flat in the trial count: 40 trials pin it down.
    return measure(trials=20, bare_trials=8) if quick else measure(trials=100, bare_trials=40)
