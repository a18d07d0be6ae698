"""ASHA per hypothesis: a trial is only ever compared with trials of its own hypothesis."""
from __future__ import annotations

from dataclasses import dataclass, field

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from study.orchestration.experiments import PerHypothesisScheduler


@dataclass(eq=False)
class _Trial:
    """Stands in for a Tune trial: the schedulers only read `config` and use it as a key."""

    trial_id: str
    config: dict = field(default_factory=dict)


def _feed(scheduler, events):
    decisions = {}
    for trial, epoch, value in events:
        decisions[(trial.trial_id, epoch)] = scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_objective": value})
    return decisions


def test_trials_are_only_compared_within_their_hypothesis():
    a1 = _Trial("a1", {"hypothesis": "l2/nomask"})
    b1, b2 = _Trial("b1", {"hypothesis": "l2/mask"}), _Trial("b2", {"hypothesis": "l2/mask"})
    events = [(b1, 1, 0.1), (b2, 1, 0.2), (a1, 1, 10.0)]  # l2/nomask is far worse in absolute terms

    per_hypothesis = PerHypothesisScheduler(max_t=4, grace_period=1, reduction_factor=2, metric="val_objective", mode="min")
    for trial in (b1, b2, a1):
        per_hypothesis.on_trial_add(None, trial)
    decisions = _feed(per_hypothesis, events)
    assert decisions[("b2", 1)] == TrialScheduler.STOP      # worse than its own hypothesis's b1
    assert decisions[("a1", 1)] == TrialScheduler.CONTINUE  # not judged against l2/mask

    shared = AsyncHyperBandScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2,
                                     metric="val_objective", mode="min")
    for trial in (b1, b2, a1):
        shared.on_trial_add(None, trial)
    assert _feed(shared, events)[("a1", 1)] == TrialScheduler.STOP  # what one ASHA for all would do


def test_non_finite_results_are_left_to_the_trainer():
    trial = _Trial("t", {"hypothesis": "ssim/mask"})
    scheduler = PerHypothesisScheduler(max_t=4, grace_period=1, reduction_factor=2, metric="val_objective", mode="min")
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, {"epoch": 1, "val_objective": float("nan")}) == TrialScheduler.CONTINUE
    scheduler.on_trial_complete(None, trial, {"failure": "non-finite", "val_objective": float("nan")})


class _Controller:
    """The two views of a Tune controller the scheduler reads: every trial, and the live ones."""

    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        raise AssertionError("choose_trial_to_run must not scan every trial of the experiment")

    def get_live_trials(self):
        return {trial for trial in self.trials if trial.status != "TERMINATED"}


def test_the_next_trial_is_the_earliest_pending_then_paused_one_among_live_trials():
    from ray.tune.experiment import Trial

    scheduler = PerHypothesisScheduler(max_t=4, grace_period=1, reduction_factor=2, metric="val_objective", mode="min")
    trials = [_Trial(name, {"hypothesis": "l2/mask"}) for name in ("done", "paused", "first", "second")]
    for trial, status in zip(trials, (Trial.TERMINATED, Trial.PAUSED, Trial.PENDING, Trial.PENDING)):
        trial.status = status
        scheduler.on_trial_add(None, trial)
    assert scheduler.choose_trial_to_run(_Controller(trials)).trial_id == "first"  # arrival order, not the set's
    trials[2].status = trials[3].status = Trial.RUNNING
    assert scheduler.choose_trial_to_run(_Controller(trials)).trial_id == "paused"
    trials[1].status = Trial.RUNNING
    assert scheduler.choose_trial_to_run(_Controller(trials)) is None
