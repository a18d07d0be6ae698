"""From tuning records to the final phase's plan, and from final records to each hypothesis's
representative run: pure functions over `TrialRecord`s."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from study.config.runs import FinalRun
from study.search.objective import best
from study.search.trials import TrialRecord


@dataclass(frozen=True)
class BestConfig:
    """A hypothesis's best tuning trial: the settings its final runs retrain, and where they came from."""

    hypothesis: str
    kl_weight: float
    lr: float
    trial_id: str
    objective: float | None
    epochs: int


def best_per_hypothesis(records: Iterable[TrialRecord], metric: str, mode: str) -> dict[str, BestConfig]:
    """Each hypothesis's best finished trial on `metric`; failed or non-finite trials are never chosen."""
    by_hypothesis: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_hypothesis.setdefault(record.hypothesis, []).append(record)
    chosen: dict[str, BestConfig] = {}
    for hypothesis, group in by_hypothesis.items():
        winner = best(group, lambda r: r.value(metric), mode)
        if winner is not None:
            chosen[hypothesis] = BestConfig(
                hypothesis=hypothesis, kl_weight=float(winner.config["kl_weight"]),
                lr=float(winner.config["lr"]), trial_id=winner.trial_id, objective=winner.value(metric),
                epochs=winner.epochs,
            )
    return chosen


def final_runs(best_configs: dict[str, BestConfig], hypotheses: list[str], seeds: int,
               tuning_seed: int = 0) -> list[FinalRun]:
    """One run per (hypothesis, seed), in grid order, for hypotheses that have a best configuration.

    Final seeds differ from the tuning seed, so the test numbers come from fresh retrains rather than
    from the very run that won the selection (which would bias them optimistically)."""
    return [
        FinalRun(hypothesis=h, kl_weight=best_configs[h].kl_weight, lr=best_configs[h].lr, seed=tuning_seed + 1 + index)
        for h in hypotheses if h in best_configs for index in range(seeds)
    ]


def representative_runs(records: Iterable[TrialRecord]) -> dict[str, TrialRecord]:
    """Each hypothesis's first successful final run (lowest seed): the model it publishes."""
    chosen: dict[str, TrialRecord] = {}
    for record in sorted(records, key=lambda r: (r.hypothesis, r.seed if r.seed is not None else -1)):
        if not record.failed and record.checkpoint and record.hypothesis not in chosen:
            chosen[record.hypothesis] = record
    return chosen
