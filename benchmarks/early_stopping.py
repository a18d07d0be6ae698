"""Early stopping: the tuning phase with ASHA against the same phase with the full budget (FIFO).

Both run the study's own tuner (`experiments.tuning_tuner`: real trainer, per-hypothesis Optuna,
per-hypothesis ASHA) on the smoke preset's synthetic faces with fixed seeds. Optuna samples every
trial at random (startup trials = trials per hypothesis), so both sides train exactly the same
configurations and only the scheduler differs. Claims: ASHA spends at most 40% of the trial-epochs,
picks the same best hypothesis and ranks the hypotheses alike (Spearman) on a metric that every
hypothesis shares (validation 1-SSIM of each hypothesis's selected trial).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from .common import Row, Stopwatch, Target, ratio

NAME = "early_stopping"
EPOCHS_TARGET = Target("<=", 0.40)
SAME_BEST_TARGET = Target(">=", 1.0, on="value")
RANK_TARGET = Target(">=", 0.8, on="value")
RANK_METRIC = "val_one_minus_ssim"


def study_config(data_path: str, *, losses: list[str], masks: list[bool], trials: int, epochs: int, grace_period: int,
                 reduction_factor: float, kind: str, max_train_batches: int, batch_size: int, num_cpus: int):
    from study.config.loading import load_study_config

    overrides = [
        f"data.path={data_path}", "data.synthesize_if_missing=null", f"grid.losses=[{', '.join(losses)}]",
        f"grid.masks=[{', '.join(str(m).lower() for m in masks)}]", f"search.trials_per_hypothesis={trials}",
        f"search.startup_trials={trials}", f"train.epochs={epochs}", f"train.max_train_batches={max_train_batches}",
        f"train.batch_size={batch_size}", "train.max_val_batches=1", "train.model.width=0.125", "train.model.latent_dim=16",
        f"scheduler.kind={kind}",
        f"scheduler.grace_period={grace_period}", f"scheduler.reduction_factor={reduction_factor}",
        f"ray.num_cpus={num_cpus}", "ray.dashboard=false", f"name=bench-{kind}",
    ]
    return load_study_config("smoke", overrides=overrides)


def tune_phase(config, storage: Path) -> list:
    """One tuning phase through the study's tuner; no tracking (that is measured elsewhere)."""
    from study.orchestration import experiments
    from study.search.trials import Listeners

    tuner = experiments.tuning_tuner(config, config.data.path, str(storage), Listeners())
    return experiments.fit(tuner, str(storage), experiments.TUNE_EXPERIMENT)


def trial_epochs(records: list) -> int:
    return sum(record.epochs for record in records)


def hypothesis_scores(records: list, metric: str, mode: str, rank_metric: str) -> dict[str, float]:
    """Each hypothesis's selected trial (best on the study's objective), scored on `rank_metric`."""
    from study.search.selection import best_per_hypothesis

    best = best_per_hypothesis(records, metric, mode)
    by_id = {record.trial_id: record for record in records}
    scores = {}
    for hypothesis, chosen in best.items():
        value = by_id[chosen.trial_id].value(rank_metric)
        if value is not None:
            scores[hypothesis] = value
    return scores


def spearman(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Rank correlation over the hypotheses both sides scored (None with fewer than two)."""
    from scipy.stats import spearmanr

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    value = spearmanr([a[h] for h in common], [b[h] for h in common]).statistic
    return float(value) if math.isfinite(value) else None


def compare(asha: list[dict[str, Any]], fifo: list[dict[str, Any]], metric: str = "val_objective",
            mode: str = "min", rank_metric: str = RANK_METRIC) -> dict[str, Any]:
    """Trial-epochs, best hypothesis and rank agreement of two tuning phases over the same trials."""
    ours, full = hypothesis_scores(asha, metric, mode, rank_metric), hypothesis_scores(fifo, metric, mode, rank_metric)
    best = {name: (min(scores, key=scores.get) if scores else None)
            for name, scores in (("asha", ours), ("fifo", full))}
    return {
        "trial_epochs": {"asha": trial_epochs(asha), "fifo": trial_epochs(fifo)},
        "best": best,
        "same_best": best["asha"] is not None and best["asha"] == best["fifo"],
        "spearman": spearman(ours, full),
        "objective_spearman": spearman(hypothesis_scores(asha, metric, mode, metric),
                                       hypothesis_scores(fifo, metric, mode, metric)),
        "scores": {"asha": ours, "fifo": full},
        "errors": sum(1 for record in asha + fifo if record.failed),
    }


def measure(*, count: int, losses: list[str], masks: list[bool], trials: int, epochs: int, grace_period: int,
            reduction_factor: float, max_train_batches: int, batch_size: int = 16, num_cpus: int = 2) -> list[Row]:
    from data.prepare import synthesize
    from study.orchestration import cluster
    from study.config.loading import preset_values

    smoke_data = preset_values("smoke")["data"]["synthesize_if_missing"]
    with tempfile.TemporaryDirectory(prefix="maskvae-bench-asha-") as scratch:
        root = Path(scratch)
        synthesize(root / "faces", count=count, size=smoke_data["size"], seed=smoke_data["seed"], progress=False)
        configs = {kind: study_config(str(root / "faces"), losses=losses, masks=masks, trials=trials, epochs=epochs,
                                      grace_period=grace_period, reduction_factor=reduction_factor, kind=kind,
                                      max_train_batches=max_train_batches, batch_size=batch_size, num_cpus=num_cpus)
                   for kind in ("asha", "fifo")}
        cluster.start_ray(configs["asha"].ray)
        rows, seconds = {}, {}
        try:
            for kind, config in configs.items():
                clock = Stopwatch()
                rows[kind] = tune_phase(config, root / kind)
                seconds[kind] = clock.lap()
        finally:
            cluster.stop_ray()
    result = compare(rows["asha"], rows["fifo"])
    epochs_used = result["trial_epochs"]
    setting = (f"{len(losses) * len(masks)} hypotheses x {trials} trials x {epochs} epochs, "
               f"grace {grace_period}, reduction {reduction_factor:g}")
    details = {"setting": setting, "seconds": seconds, **result}
    return [
        Row(NAME, f"trial-epochs, ASHA vs full budget ({setting})", "trial-epochs", float(epochs_used["asha"]),
            float(epochs_used["fifo"]), "FIFO (every trial to the end)", EPOCHS_TARGET,
            ratio(epochs_used["asha"], epochs_used["fifo"]), details=details),
        Row(NAME, f"same best hypothesis ({result['best']['asha']} vs {result['best']['fifo']})", "yes=1",
            float(result["same_best"]), None, "FIFO's best", SAME_BEST_TARGET),
        Row(NAME, f"Spearman rank correlation of hypotheses ({RANK_METRIC})", "rho",
            result["spearman"], None, "FIFO's ranking", RANK_TARGET,
            note=f"on val_objective: {result['objective_spearman']}"),
    ]


def run(quick: bool) -> list[Row]:
    # The paper preset's tuning schedule: its epochs per trial, grace period and reduction factor,
    # with its 16 trials per hypothesis. Ray's ASHA runs each hypothesis's first trial in full and
    # every trial for the grace period, so those fix most of the cost.
    from study.config.loading import preset_values

    paper = preset_values("paper")
    grace, reduction = paper["scheduler"]["grace_period"], paper["scheduler"]["reduction_factor"]
    if quick:
        return measure(count=600, losses=["l2", "ssim"], masks=[True, False], trials=8, epochs=10, grace_period=grace,
                       reduction_factor=reduction, max_train_batches=1)
    return measure(count=1200, losses=["l2", "ssim"], masks=[True, False], trials=paper["search"]["trials_per_hypothesis"],
                   epochs=paper["train"]["epochs"], grace_period=grace, reduction_factor=reduction, max_train_batches=2)
