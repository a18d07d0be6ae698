"""Experiments: the tuning and final-phase Tuners, restoring them, and reading what Ray recorded
back as `TrialRecord`s. Storage paths may be local or object-store URIs (`data.storage`)."""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
from collections.abc import Callable
from typing import Any

from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import BasicVariantGenerator, Searcher

from data import storage
from study.config.hypotheses import slug
from study.config.runs import FinalRun
from study.config.study import StudyConfig
from study.orchestration.adapters import HypothesisSearcher, PerHypothesisScheduler
from study.orchestration.callbacks import CheckpointPruner, ListenerCallback, record_of
from study.orchestration.cluster import default_concurrency, reuse_actors
from study.orchestration.startgate import StartGate
from study.orchestration.trainables import final_trial, trial_actor_class, tune_trial
from study.search.optuna_search import HypothesisSearch
from study.search.trials import Phase, TrialListener, TrialRecord

TUNE_EXPERIMENT = Phase.TUNE
FINAL_EXPERIMENT = Phase.FINAL
PHASE_EXPERIMENTS = Phase.TRIALS
# Per ended trial: the newest and one older, a fallback when the newest is unreadable.
KEEP_CHECKPOINTS = 2
# Other studies' drivers on this host start their experiments in other seconds (startgate.py).
_START_GATE = StartGate()


def _trial_dirname(trial) -> str:
    config = trial.config
    hypothesis = slug(config.get("hypothesis", "trial"))
    suffix = f"-seed{config['seed']}" if "seed" in config else ""
    return f"{hypothesis}{suffix}-{trial.trial_id}"


def _trial_name(trial) -> str:
    """What people read for a trial (progress lines, the dashboard): `<hypothesis>#<index>:<id>` when
    tuning, `<hypothesis>/seed<N>:<id>` in the final phase."""
    config = trial.config
    suffix = f"/seed{config['seed']}" if "seed" in config else f"#{config['index']}" if "index" in config else ""
    return f"{config.get('hypothesis', 'trial')}{suffix}:{trial.trial_id}"


def _resources(config: StudyConfig) -> dict[str, float]:
    return {"cpu": config.resources.cpus_per_trial, "gpu": config.resources.gpus_per_trial}


def _callbacks(name: str, listener: TrialListener, storage_path: str) -> list[Callback]:
    return [ListenerCallback(name, listener, storage_path), CheckpointPruner(storage_path, KEEP_CHECKPOINTS)]


def _trainable(config: StudyConfig, phase: str, trial_fn, data_path: str, replacement=None) -> type:
    """The phase's trial function, with the study's parameters and resources, as the named actor
    class the dashboard shows (`trial_actor_class`)."""
    function = replacement or tune.with_parameters(trial_fn, study_json=config.model_dump_json(), data_path=data_path)
    # Resources go on the function: `with_resources` on a class would rename it `ResourceTrainable`.
    return trial_actor_class(tune.with_resources(function, _resources(config)), phase, reuse_actors(config))


def _run_config(config: StudyConfig, storage_path: str, name: str, callbacks: list[Callback]) -> tune.RunConfig:
    # No `num_to_keep`: Ray would force an experiment snapshot (every trial and the searcher) about
    # once per trial; CheckpointPruner keeps the newest checkpoints instead (see there).
    return tune.RunConfig(
        name=name, storage_path=storage_path, callbacks=[*callbacks, _START_GATE], verbose=0,
        failure_config=tune.FailureConfig(max_failures=config.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
    )


def tuning_tuner(config: StudyConfig, data_path: str, storage_path: str, listener: TrialListener,
                 trainable: Callable[[dict[str, Any]], None] | None = None) -> tune.Tuner:
    """The tuning phase's Tuner. `trainable` replaces the trainer (the orchestration benchmark's trivial
    trial); by default each trial is `tune_trial` on this study's dataset."""
    trainable = _trainable(config, TUNE_EXPERIMENT, tune_trial, data_path, trainable)
    metric, mode = config.objective.metric, config.objective.mode
    searcher = HypothesisSearcher(HypothesisSearch.from_config(config), metric, mode, config.objective.secondary_metric)
    if config.scheduler.kind == "asha":
        scheduler = PerHypothesisScheduler(config.train.epochs, config.scheduler.grace_period,
                                           config.scheduler.reduction_factor, metric, mode)
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=config.total_trials, metric=metric, mode=mode,
            reuse_actors=reuse_actors(config), max_concurrent_trials=default_concurrency(config),
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname,
        ),
        run_config=_run_config(config, storage_path, TUNE_EXPERIMENT, _callbacks(TUNE_EXPERIMENT, listener, storage_path)),
    )


def final_tuner(config: StudyConfig, runs: list[FinalRun], data_path: str, storage_path: str,
                listener: TrialListener) -> tune.Tuner:
    # Each run is one preset point, fed flat: a final trial's config is its run (hypothesis, kl_weight,
    # lr, seed). The space holds the runs' values so Tune accepts the points as they are.
    points = [dataclasses.asdict(run) for run in runs]
    space = {field.name: tune.choice(sorted({point[field.name] for point in points}, key=str))
             for field in dataclasses.fields(FinalRun)} if points else {}
    return tune.Tuner(
        _trainable(config, FINAL_EXPERIMENT, final_trial, data_path),
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(points_to_evaluate=points), num_samples=len(points),
            reuse_actors=reuse_actors(config), max_concurrent_trials=default_concurrency(config),
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname,
        ),
        run_config=_run_config(config, storage_path, FINAL_EXPERIMENT, _callbacks(FINAL_EXPERIMENT, listener, storage_path)),
    )


def saved_search(storage_path: str) -> HypothesisSearch | None:
    """The searcher state Tune saved with the tuning experiment (every Optuna study, as of the last
    snapshot), read through the storage module so object-store studies have it too."""
    location = storage.Location.of(experiment_path(storage_path, TUNE_EXPERIMENT))
    names = location.names(Searcher.CKPT_FILE_TMPL.format("*"))
    if not names:
        return None
    # Written by maskvae's own searcher into the study's storage (trusted, as Tuner.restore requires).
    return HypothesisSearch.from_state(pickle.loads(location.read_bytes(names[-1]))["search"])


def experiment_path(storage_path: str, name: str) -> str:
    return storage.join(storage_path, name)


def can_restore(storage_path: str, name: str) -> bool:
    return tune.Tuner.can_restore(experiment_path(storage_path, name))


def restore_tuner(config: StudyConfig, storage_path: str, name: str, data_path: str, listener: TrialListener) -> tune.Tuner:
    trainable = _trainable(config, name, tune_trial if name == TUNE_EXPERIMENT else final_trial, data_path)
    tuner = tune.Tuner.restore(experiment_path(storage_path, name), trainable, resume_unfinished=True,
                               resume_errored=True)
    reattach_callbacks(tuner, [*_callbacks(name, listener, storage_path), _START_GATE])
    return tuner


def reattach_callbacks(tuner: tune.Tuner, callbacks: list[Callback]) -> None:
    """Callbacks are not restored with a tuner, and Ray offers no public way to give them back: this
    is the one write to Ray's private tuner state (tests/test_orchestration.py fails loudly if a Ray
    release moves it)."""
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    if run_config is None or not hasattr(run_config, "callbacks"):
        raise RuntimeError("this Ray release keeps a restored Tuner's RunConfig elsewhere: "
                           "maskvae cannot re-attach its listeners (study.orchestration.experiments)")
    run_config.callbacks = callbacks


def quiet_tune_output() -> None:
    """maskvae prints one line per trial itself; Tune's tables and per-failure tracebacks would bury
    them (the full error text stays in each trial's error.txt and on its MLflow run)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    logging.getLogger("ray.tune.tune").setLevel(logging.WARNING)


def fit(tuner: tune.Tuner, storage_path: str, name: str, with_history: bool = False) -> list[TrialRecord]:
    """Run (or finish) a tuner, then read every trial's recorded state back from the experiment directory."""
    quiet_tune_output()
    _START_GATE.acquire()
    try:
        tuner.fit()
    finally:
        _START_GATE.release()  # Tune gives it back at setup; this covers a fit that failed before
    return records(storage_path, name, with_history)


def records(storage_path: str, name: str, with_history: bool = False) -> list[TrialRecord]:
    """The recorded trials of an experiment, without running anything (optionally every epoch's)."""
    analysis = tune.ExperimentAnalysis(experiment_path(storage_path, name))
    frames = analysis.trial_dataframes if with_history else {}
    out = []
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        history = tuple(_present(row) for row in frame.to_dict("records")) if frame is not None else ()
        out.append(record_of(trial, name, storage_path, history=history))
    return out


def final_runs_intact(storage_path: str) -> bool:
    """Whether every trial of the saved final experiment still carries its run settings."""
    try:
        saved = records(storage_path, FINAL_EXPERIMENT)
    except Exception:  # an unreadable snapshot is no better than a missing one
        return False
    return all("hypothesis" in record.config and "seed" in record.config for record in saved)


def discard(storage_path: str, name: str) -> None:
    storage.Location.of(storage_path).delete_tree(name)


def _present(row: dict[str, Any]) -> dict[str, Any]:
    """A history row without the NaN that pandas puts where an epoch did not report a key."""
    return {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
