"""Thin adapters around pure objects: the Optuna search as a Tune Searcher, and one ASHA per
hypothesis as a Tune scheduler (trials only compete within their own hypothesis)."""
from __future__ import annotations

import pickle

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from study.search.objective import finite_or_none
from study.search.optuna_search import HypothesisSearch


class HypothesisSearcher(Searcher):
    """Ray's view of HypothesisSearch: suggestions round-robin, results to their own Optuna study."""

    def __init__(self, search: HypothesisSearch, metric: str, mode: str, secondary_metric: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.search = search
        self.secondary_metric = secondary_metric

    def suggest(self, trial_id: str):
        suggestion = self.search.suggest(trial_id)
        return Searcher.FINISHED if suggestion is None else suggestion

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        values = None
        if result and not error:
            names = [self.metric] + ([self.secondary_metric] if self.secondary_metric else [])
            values = [finite_or_none(result.get(name)) for name in names]
        self.search.complete(trial_id, values)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"search": self.search.state(), "secondary_metric": self.secondary_metric}, handle)

    def restore(self, checkpoint_path: str) -> None:
        # The experiment directory is written by maskvae itself (trusted, like Tuner.restore requires).
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self.search = HypothesisSearch.from_state(state["search"])
        self.secondary_metric = state["secondary_metric"]


class PerHypothesisScheduler(FIFOScheduler):
    """One ASHA per hypothesis: a trial is only ever compared with trials of its own hypothesis."""

    def __init__(self, max_t: int, grace_period: int, reduction_factor: float, metric: str, mode: str):
        super().__init__()
        self._settings = dict(time_attr="epoch", max_t=max_t, grace_period=grace_period,
                              reduction_factor=reduction_factor, metric=metric, mode=mode)
        self._metric, self._mode = metric, mode
        self._by_hypothesis: dict[str, AsyncHyperBandScheduler] = {}
        self._added: dict[str, int] = {}  # trial id -> order of arrival, for FIFO among live trials

    def _for(self, trial) -> AsyncHyperBandScheduler:
        hypothesis = trial.config["hypothesis"]
        if hypothesis not in self._by_hypothesis:
            self._by_hypothesis[hypothesis] = AsyncHyperBandScheduler(**self._settings)
        return self._by_hypothesis[hypothesis]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        self._added.setdefault(trial.trial_id, len(self._added))
        self._for(trial).on_trial_add(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        """FIFO's choice (the earliest pending trial, else the earliest paused one) among live trials
        only: Tune's own looks through every trial of the experiment at each step, a cost that grows
        with the study."""
        live = sorted(tune_controller.get_live_trials(), key=lambda trial: self._added.get(trial.trial_id, -1))
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in live:
                if trial.status == status:
                    return trial
        return None

    def on_trial_result(self, tune_controller, trial, result) -> str:
        if finite_or_none(result.get(self._metric)) is None:
            return TrialScheduler.CONTINUE  # the trainer itself stops non-finite runs with a reason
        return self._for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        if result and finite_or_none(result.get(self._metric)) is not None:
            self._for(trial).on_trial_complete(tune_controller, trial, result)
        else:
            self._for(trial).on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{h}: {s.debug_string()}" for h, s in self._by_hypothesis.items())
