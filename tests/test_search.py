"""The hypothesis-aware searcher (routing, budgets, failure handling) and the final-phase selection."""
from __future__ import annotations

import math
import pickle

import pytest

from study.search.optuna_search import HypothesisSearch
from study.search.objective import best, better
from study.search.selection import best_per_hypothesis, final_runs, representative_runs
from study.search.trials import TrialRecord
from study.config.study import LogRange

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


def _record(trial_id, hypothesis, value, status="TERMINATED", error=None, phase="tune", seed=None, checkpoint="/c"):
    config = {"hypothesis": hypothesis, "kl_weight": 0.01, "lr": 1e-4}
    if seed is not None:
        config["seed"] = seed
    return TrialRecord(phase=phase, trial_id=trial_id, config=config, status=status,
                       metrics={"val_objective": value, "epoch": 3}, error=error, checkpoint=checkpoint)


def test_best_per_hypothesis_ignores_failed_and_nan_trials():
    records = [_record("a", "l1/mask", 0.3), _record("b", "l1/mask", 0.2), _record("c", "l1/mask", float("nan")),
               _record("d", "l1/mask", 0.01, status="ERROR", error="boom"), _record("e", "l2/mask", None),
               _record("f", "l1/mask", 0.9, error="loss became NaN")]
    best = best_per_hypothesis(records, "val_objective", "min")
    assert set(best) == {"l1/mask"} and best["l1/mask"].trial_id == "b"
    assert best_per_hypothesis(records, "val_objective", "max")["l1/mask"].trial_id == "a"
    runs = final_runs(best, ["l1/mask", "l2/mask"], seeds=3)
    assert [(r.hypothesis, r.seed) for r in runs] == [("l1/mask", 1), ("l1/mask", 2), ("l1/mask", 3)]


def test_the_better_rule_honours_the_mode_and_never_prefers_non_finite_values():
    assert better(0.1, 0.2, "min") and not better(0.1, 0.2, "max")
    assert better(0.3, None, "min") and better(0.3, float("nan"), "max")
    assert not better(float("nan"), 0.2, "min") and not better(None, 0.2, "max") and not better(0.2, 0.2, "min")
    assert best([3.0, 1.0, 2.0], lambda v: v, "min") == 1.0 and best([3.0, 1.0, 2.0], lambda v: v, "max") == 3.0
    assert best([float("inf"), None], lambda v: v, "min") is None
    with pytest.raises(ValueError):
        better(1.0, 2.0, "lowest")


def test_trial_record_status_mapping():
    assert _record("a", "l1/mask", 0.1).mlflow_status == "FINISHED"
    assert _record("a", "l1/mask", 0.1, status="ERROR", error="x").mlflow_status == "FAILED"
    assert _record("a", "l1/mask", float("nan"), error="loss became NaN").mlflow_status == "FAILED"
    lost = _record("a", "l1/mask", 0.1, status="RUNNING")
    assert lost.mlflow_status == "KILLED" and not lost.ended and lost.outcome == "running"
    assert _record("a", "l1/mask", 0.1, status="ERROR").value("val_objective") is None


def test_each_hypothesis_is_represented_by_its_first_successful_seed():
    """The winning hypothesis's first seed failing must not leave it without a published model,
    nor hand it another hypothesis's seed."""
    records = [
        _record("f1", "l1/mask", None, phase="final", seed=1, status="ERROR", error="boom", checkpoint=None),
        _record("f2", "l1/mask", 0.2, phase="final", seed=2),
        _record("f3", "l1/mask", 0.2, phase="final", seed=3),
        _record("g1", "l2/mask", 0.2, phase="final", seed=1),
        _record("g2", "l2/mask", 0.2, phase="final", seed=2),
    ]
    chosen = representative_runs(records)
    assert chosen["l1/mask"].trial_id == "f2" and chosen["l2/mask"].trial_id == "g1"


def test_every_hypothesis_starts_from_the_same_configurations():
    """Common random numbers: the start-up configurations are drawn once per study and shared, so
    tuning luck is paired across hypotheses; after them each hypothesis's TPE goes its own way."""
    search = _search(trials=4)  # two start-up trials per hypothesis
    issued = {h: [] for h in HYPS}
    for i in range(4 * len(HYPS)):
        suggestion = search.suggest(f"t{i}")
        issued[suggestion["hypothesis"]].append((suggestion["kl_weight"], suggestion["lr"]))
        search.complete(f"t{i}", [float(i % 5)])
    firsts = {tuple(configs[:2]) for configs in issued.values()}
    assert len(firsts) == 1, issued
    assert len({tuple(configs[2:]) for configs in issued.values()}) > 1, issued
    other = _search(trials=4)
    other.seed = 7
    assert other.startup_configs() != search.startup_configs()
