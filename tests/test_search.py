"""The hypothesis-aware searcher (routing, budgets, failure handling) and the final-phase selection."""
from __future__ import annotations

import math
import pickle

from study.search import HypothesisSearch
from study.selection import best_per_hypothesis, final_runs
from study.study_config import LogRange

HYPS = ["l1/mask", "l2/mask", "ssim/nomask"]


def _search(trials=4, directions=("minimize",)):
    return HypothesisSearch(HYPS, {"kl_weight": LogRange(low=1e-5, high=1e-1), "lr": LogRange(low=1e-5, high=1e-3)},
                            trials, directions=list(directions), seed=1, startup_trials=2)


def test_round_robin_gives_every_hypothesis_the_same_budget():
    search = _search(trials=4)
    suggestions = [search.suggest(f"t{i}") for i in range(12)]
    assert [s["hypothesis"] for s in suggestions[:3]] == HYPS
    assert all(search.issued[h] == 4 for h in HYPS)
    assert search.suggest("t12") is None and search.finished_issuing
    for s in suggestions:
        assert 1e-5 <= s["kl_weight"] <= 1e-1 and 1e-5 <= s["lr"] <= 1e-3


def test_results_go_back_to_their_own_hypothesis_study():
    search = _search(trials=2)
    ids = {}
    for i in range(6):
        s = search.suggest(f"t{i}")
        ids[f"t{i}"] = s
    for trial_id, s in ids.items():
        search.complete(trial_id, [len(s["hypothesis"]) + s["lr"]])
    for hypothesis, study in search.studies.items():
        mine = {t for t, s in ids.items() if s["hypothesis"] == hypothesis}
        assert {t.user_attrs["ray_trial_id"] for t in study.trials} == mine
        for trial in study.trials:
            assert math.isclose(trial.value, len(hypothesis) + trial.params["lr"])


def test_failed_and_non_finite_trials_are_fail_never_a_value():
    search = _search(trials=3)
    a, b, c = (search.suggest(t) for t in ("a", "b", "c"))
    assert search.complete("a", None) == "fail"
    assert search.complete("b", [float("nan")]) == "fail"
    assert search.complete("c", [float("inf")]) == "fail"
    states = [t.state.name for s in search.studies.values() for t in s.trials]
    assert states == ["FAIL", "FAIL", "FAIL"]
    assert search.complete("unknown", [1.0]) == "unknown"


def test_state_round_trip_keeps_history_and_pending_trials():
    search = _search(trials=2)
    search.suggest("a")
    search.suggest("b")
    search.complete("a", [0.5])
    restored = HypothesisSearch.from_state(pickle.loads(pickle.dumps(search.state())))
    assert restored.issued == search.issued
    assert restored.complete("b", [0.25]) == "complete"
    assert len(restored.studies["l1/mask"].trials) == 1 and restored.studies["l1/mask"].trials[0].value == 0.5
    assert restored.studies["l2/mask"].trials[0].value == 0.25


def test_multi_objective_studies():
    search = _search(trials=1, directions=("minimize", "minimize"))
    search.suggest("a")
    assert search.complete("a", [0.1, 2.0]) == "complete"
    assert search.studies["l1/mask"].trials[0].values == [0.1, 2.0]


def _row(trial_id, hypothesis, value, status="TERMINATED", error=None):
    return {"trial_id": trial_id, "config": {"hypothesis": hypothesis, "kl_weight": 0.01, "lr": 1e-4},
            "metrics": {"val_objective": value}, "status": status, "error": error}


def test_best_per_hypothesis_ignores_failed_and_nan_trials():
    rows = [_row("a", "l1/mask", 0.3), _row("b", "l1/mask", 0.2), _row("c", "l1/mask", float("nan")),
            _row("d", "l1/mask", 0.01, status="ERROR", error="boom"), _row("e", "l2/mask", None)]
    best = best_per_hypothesis(rows, "val_objective")
    assert set(best) == {"l1/mask"} and best["l1/mask"]["trial_id"] == "b"
    assert best_per_hypothesis(rows, "val_objective", "max")["l1/mask"]["trial_id"] == "a"
    runs = final_runs(best, ["l1/mask", "l2/mask"], seeds=3)
    assert [(r["hypothesis"], r["seed"]) for r in runs] == [("l1/mask", 1), ("l1/mask", 2), ("l1/mask", 3)]
