"""Hypothesis-aware search: one Optuna (TPE) study per hypothesis, equal budgets, results routed home.

Pure Optuna, no Ray: `study.orchestration.adapters` wraps it in a Ray Tune Searcher. Keeping the routing here makes
it unit-testable and keeps Ray's API in one module.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from study.config.study import LogRange, StudyConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search_space(config: StudyConfig) -> dict[str, LogRange]:
    """The tuned hyperparameters as data: name -> log-uniform range."""
    return {"kl_weight": config.search.kl_weight, "lr": config.search.lr}


def objective_directions(config: StudyConfig) -> list[str]:
    directions = ["minimize" if config.objective.mode == "min" else "maximize"]
    if config.objective.secondary_metric:
        directions.append("minimize")
    return directions


@dataclass
class _Pending:
    hypothesis: str
    number: int


@dataclass
class HypothesisSearch:
    hypotheses: list[str]
    space: dict[str, LogRange]
    trials_per_hypothesis: int
    directions: list[str] = field(default_factory=lambda: ["minimize"])
    seed: int = 0
    startup_trials: int = 4
    studies: dict[str, optuna.Study] = field(default_factory=dict)
    issued: dict[str, int] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    trial_hypothesis: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for hypothesis in self.hypotheses:
            self.issued.setdefault(hypothesis, 0)
            if hypothesis not in self.studies:
                self.studies[hypothesis] = self._new_study(hypothesis)

    @classmethod
    def from_config(cls, config: StudyConfig) -> "HypothesisSearch":
        return cls(
            hypotheses=[h.name for h in config.hypotheses()], space=search_space(config),
            trials_per_hypothesis=config.search.trials_per_hypothesis, directions=objective_directions(config),
            seed=config.search.seed, startup_trials=config.search.startup_trials,
        )

    def startup_configs(self) -> list[dict[str, float]]:
        """The start-up configurations every hypothesis tries first, drawn once per study from its seed.

        Common random numbers: with the same starting points, hypotheses differ by what they are, not
        by the luck of their random draws, so tuning is paired across hypotheses."""
        rng = np.random.default_rng(self.seed)
        count = min(self.startup_trials, self.trials_per_hypothesis)
        return [{name: float(np.exp(rng.uniform(np.log(bounds.low), np.log(bounds.high))))
                 for name, bounds in self.space.items()} for _ in range(count)]

    def _new_study(self, hypothesis: str) -> optuna.Study:
        # A stable per-hypothesis seed for TPE after the shared start-up configurations.
        seed = (self.seed * 1_000_003 + zlib.crc32(hypothesis.encode())) % (2**31)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup_trials, multivariate=True)
        return optuna.create_study(study_name=hypothesis, directions=self.directions, sampler=sampler)

    @property
    def finished_issuing(self) -> bool:
        return all(count >= self.trials_per_hypothesis for count in self.issued.values())

    def next_hypothesis(self) -> str | None:
        """The hypothesis with the fewest trials issued (grid order breaks ties): round-robin."""
        open_ones = [h for h in self.hypotheses if self.issued[h] < self.trials_per_hypothesis]
        return min(open_ones, key=lambda h: self.issued[h]) if open_ones else None

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        hypothesis = self.next_hypothesis()
        if hypothesis is None:
            return None
        study = self.studies[hypothesis]
        distributions = {
            name: optuna.distributions.FloatDistribution(bounds.low, bounds.high, log=True)
            for name, bounds in self.space.items()
        }
        index = self.issued[hypothesis]
        startup = self.startup_configs()
        if index < len(startup):
            # Enqueued only now, so no waiting trial sits in a study (or in its saved state).
            study.enqueue_trial(startup[index])
        trial = study.ask(distributions)
        trial.set_user_attr("ray_trial_id", trial_id)
        self.issued[hypothesis] += 1
        self.pending[trial_id] = _Pending(hypothesis, trial.number)
        self.trial_hypothesis[trial_id] = hypothesis
        return {"hypothesis": hypothesis, "index": index, **{name: trial.params[name] for name in self.space}}

    def complete(self, trial_id: str, values: list[float] | None) -> str:
        """Tell the trial's own hypothesis study; non-finite or missing values are FAIL, never a score."""
        pending = self.pending.pop(trial_id, None)
        if pending is None:
            return "unknown"
        study = self.studies[pending.hypothesis]
        finite = values is not None and len(values) == len(self.directions) and all(
            v is not None and math.isfinite(v) for v in values
        )
        if finite:
            study.tell(pending.number, values if len(values) > 1 else values[0])
            return "complete"
        study.tell(pending.number, state=optuna.trial.TrialState.FAIL)
        return "fail"

    def state(self) -> dict[str, Any]:
        return {
            "hypotheses": self.hypotheses, "space": {k: v.model_dump() for k, v in self.space.items()},
            "trials_per_hypothesis": self.trials_per_hypothesis, "directions": self.directions, "seed": self.seed,
            "startup_trials": self.startup_trials, "studies": self.studies, "issued": self.issued,
            "pending": {k: (v.hypothesis, v.number) for k, v in self.pending.items()},
            "trial_hypothesis": self.trial_hypothesis,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "HypothesisSearch":
        return cls(
            hypotheses=state["hypotheses"], space={k: LogRange(**v) for k, v in state["space"].items()},
            trials_per_hypothesis=state["trials_per_hypothesis"], directions=state["directions"], seed=state["seed"],
            startup_trials=state["startup_trials"], studies=state["studies"], issued=state["issued"],
            pending={k: _Pending(*v) for k, v in state["pending"].items()}, trial_hypothesis=state["trial_hypothesis"],
        )

    def trials_table(self) -> list[dict[str, Any]]:
        """Every Optuna trial of every hypothesis, for the report and the tests."""
        rows = []
        for hypothesis, study in self.studies.items():
            for trial in study.trials:
                rows.append({
                    "hypothesis": hypothesis, "optuna_number": trial.number, "state": trial.state.name,
                    "ray_trial_id": trial.user_attrs.get("ray_trial_id"),
                    "values": list(trial.values) if trial.values else None, **trial.params,
                })
        return rows
