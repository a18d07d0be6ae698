"""Pure functions that turn tuning results into the final phase's plan."""
from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None (NaN, Inf, missing, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def best_per_hypothesis(rows: list[dict[str, Any]], metric: str, mode: str = "min") -> dict[str, dict[str, Any]]:
    """Each hypothesis's best finished trial on `metric`; failed or non-finite trials are never chosen."""
    sign = 1.0 if mode == "min" else -1.0
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        value = finite_or_none(row["metrics"].get(metric))
        if row.get("status") == "ERROR" or row.get("error") or value is None:
            continue
        hypothesis = row["config"]["hypothesis"]
        if hypothesis not in best or sign * value < sign * best[hypothesis]["objective"]:
            best[hypothesis] = {
                "hypothesis": hypothesis, "kl_weight": float(row["config"]["kl_weight"]),
                "lr": float(row["config"]["lr"]), "trial_id": row["trial_id"], "objective": value,
            }
    return best


def final_runs(best: dict[str, dict[str, Any]], hypotheses: list[str], seeds: int, tuning_seed: int = 0) -> list[dict[str, Any]]:
    """One run per (hypothesis, seed), in grid order, for hypotheses that have a best configuration.

    Final seeds differ from the tuning seed, so the test numbers come from fresh retrains rather than
    from the very run that won the selection (which would bias them optimistically)."""
    return [
        {"hypothesis": h, "kl_weight": best[h]["kl_weight"], "lr": best[h]["lr"], "seed": tuning_seed + 1 + index}
        for h in hypotheses if h in best for index in range(seeds)
    ]
