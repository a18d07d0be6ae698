"""Every Ray call in maskvae lives here (Ray's API moves between releases).

The trainables are a few lines around `train()`; the searcher wraps `HypothesisSearch`; the
scheduler gives each hypothesis its own ASHA so trials only compete within their hypothesis.
"""
from __future__ import annotations

import logging
import os
import pickle
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import ray
from ray import tune
from ray.tune import Callback, Checkpoint
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from . import faults
from .events import TrialListener
from .search import HypothesisSearch
from .selection import finite_or_none
from .study_config import RayConfig, StudyConfig

TUNE_EXPERIMENT = "tune"
FINAL_EXPERIMENT = "final"
_DATA_CACHE: dict[str, Any] = {}


# ------------------------------------------------------------------------------------------
# Cluster connection

def start_ray(config: RayConfig) -> str | None:
    """Connect to `config.address` or start local Ray; returns the dashboard URL (localhost only)."""
    if ray.is_initialized():
        return None
    if config.address:
        # Workers on other nodes inherit their raylet's environment, not the driver's: forward the
        # fault-injection rules explicitly (unset outside the reliability tests).
        env_vars = {faults.ENV: os.environ[faults.ENV]} if os.environ.get(faults.ENV) else {}
        context = ray.init(address=config.address, log_to_driver=False,
                           runtime_env={"env_vars": env_vars} if env_vars else None)
    else:
        context = ray.init(num_cpus=config.num_cpus, include_dashboard=config.dashboard, dashboard_host="127.0.0.1",
                           dashboard_port=config.dashboard_port, log_to_driver=False, configure_logging=False)
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def cluster_nodes() -> list[dict[str, Any]]:
    return ray.nodes()


def default_concurrency(config: StudyConfig) -> int:
    """Trials the cluster can run at once. Tune keeps a single trial pending for a custom searcher,
    so without an explicit cap it would fill a cluster one trial at a time."""
    if config.resources.max_concurrent_trials:
        return config.resources.max_concurrent_trials
    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 0) / config.resources.cpus_per_trial]
    if config.resources.gpus_per_trial:
        fits.append(resources.get("GPU", 0) / config.resources.gpus_per_trial)
    return max(1, int(min(fits)))


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


# ------------------------------------------------------------------------------------------
# Trainables: a few lines each around train() / evaluation.

def _dataset(path: str):
    """One FaceData per worker process (memory-mapped shards), reused across trials with actor reuse."""
    from data.loader import FaceData

    if path not in _DATA_CACHE:
        _DATA_CACHE[path] = FaceData.load(path)
    return _DATA_CACHE[path]


_trial_notes: dict[str, Any] = {}


def _report_to_tune(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
    payload = {**metrics, **_trial_notes, "node_id": node_id()}
    checkpoint = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
    _export_trial_metrics(metrics)
    tune.report(payload, checkpoint=checkpoint)
    if faults.fire("after_report", epoch=int(metrics.get("epoch", 0))) == "corrupt_and_exit":
        _corrupt_latest_persisted_checkpoint()
        os._exit(137)


# Dashboard view of trials: Tune reuses one actor for many trials, so actor and task names say
# "tune_trial"/"final_trial"; these per-trial gauges (Ray exports them as ray_maskvae_trial_* on
# every node's metrics endpoint, and the dashboard's Grafana panels) carry the hypothesis and the
# trial name instead, and each trial's first report names it in its actor's log.
_TRIAL_GAUGE_SPECS = {
    "images_per_s": ("maskvae_trial_images_per_second", "Training throughput of the trial's last epoch (images/s)."),
    "epoch": ("maskvae_trial_epoch", "Epochs the trial has finished."),
    "val_objective": ("maskvae_trial_objective", "Validation objective of the trial's last epoch."),
}
_TRIAL_GAUGE_TAGS = ("hypothesis", "trial", "phase")
_trial_gauges: dict[str, Any] = {}
_announced_trials: set[str] = set()


def _trial_tags() -> dict[str, str] | None:
    """hypothesis / trial name (`_trial_name`'s "<hypothesis>[#<i>|/seed<N>]:<id>") / phase of the running trial."""
    try:
        context = tune.get_context()
        name, phase = context.get_trial_name(), context.get_experiment_name()
    except Exception:  # not inside a Tune trial (a direct call in a test): nothing to label
        return None
    if not name:
        return None
    hypothesis = name.rsplit(":", 1)[0].split("#")[0].split("/seed")[0]
    return {"hypothesis": hypothesis, "trial": name, "phase": phase or ""}


def _export_trial_metrics(metrics: dict[str, float]) -> None:
    from ray.util.metrics import Gauge

    tags = _trial_tags()
    if tags is None:
        return
    if tags["trial"] not in _announced_trials:
        _announced_trials.add(tags["trial"])
        print(f"maskvae {tags['phase']} trial {tags['trial']} (hypothesis {tags['hypothesis']}) on node {node_id()}",
              flush=True)
    try:
        for key, (name, description) in _TRIAL_GAUGE_SPECS.items():
            value = finite_or_none(metrics.get(key))
            if value is None:
                continue
            if name not in _trial_gauges:
                _trial_gauges[name] = Gauge(name, description=description, tag_keys=_TRIAL_GAUGE_TAGS)
            _trial_gauges[name].set(value, tags=tags)
    except Exception as error:  # a dashboard gauge is never worth a failed trial
        logging.getLogger(__name__).warning("maskvae: trial metrics not exported: %s", error)


def _corrupt_latest_persisted_checkpoint() -> None:
    """Failpoint: truncate the newest persisted checkpoint, as a crash mid-write on shared storage would."""
    import pyarrow.fs

    storage = tune.get_context().get_storage()
    filesystem = storage.storage_filesystem
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(storage.trial_fs_path))
    newest = sorted(i.path for i in infos if i.base_name.startswith("checkpoint_"))[-1]
    target = f"{newest}/checkpoint.pt"
    with filesystem.open_input_stream(target) as handle:
        content = handle.read()
    with filesystem.open_output_stream(target) as handle:
        handle.write(content[: len(content) // 3])


def _resume_candidates(latest: Checkpoint | None) -> list[Checkpoint | None]:
    """The newest checkpoint, then older ones kept beside it (newest first), then a fresh start."""
    if latest is None:
        return [None]
    import pyarrow.fs

    parent = latest.path.rstrip("/").rsplit("/", 1)[0]
    infos = latest.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    older = sorted((i.path for i in infos if i.type == pyarrow.fs.FileType.Directory
                    and i.base_name.startswith("checkpoint_") and i.path.rstrip("/") != latest.path.rstrip("/")),
                   reverse=True)
    return [latest, *(Checkpoint(path, filesystem=latest.filesystem) for path in older), None]


def _run_trial(body, prefix: str, metric: str) -> None:
    """Resume from the newest readable checkpoint; a corrupted one is skipped, and the trial says so."""
    from .checkpoint import CheckpointError, load_checkpoint

    _trial_notes.clear()
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        for candidate in _resume_candidates(tune.get_checkpoint()):
            if candidate is None:
                if skipped:
                    _trial_notes["checkpoint_note"] = f"no readable checkpoint ({'; '.join(skipped)}): restarted from scratch"
                return _guard_non_finite(body, Path(workdir), None, metric)
            with candidate.as_directory() as resume_dir:
                try:
                    load_checkpoint(Path(resume_dir))
                except CheckpointError as error:
                    skipped.append(str(error))
                    continue
                if skipped:
                    _trial_notes["checkpoint_note"] = (f"skipped unreadable checkpoint(s) ({'; '.join(skipped)}); "
                                                       f"resumed from {candidate.path.rstrip('/').rsplit('/', 1)[-1]}")
                return _guard_non_finite(body, Path(workdir), Path(resume_dir), metric)


def _guard_non_finite(body, workdir: Path, resume_dir: Path | None, metric: str) -> None:
    """A NaN/Inf loss ends the trial with its reason (no retry: it would diverge again)."""
    from .trainer import NonFiniteLossError

    try:
        body(workdir, resume_dir)
    except NonFiniteLossError as error:
        # Tune requires the metric in every result: NaN, which the searcher records as FAIL.
        tune.report({"failure": str(error), metric: float("nan"), **_trial_notes})


def tune_trial(trial_config: dict[str, Any], *, study_json: str, data_path: str) -> None:
    from .trainer import train

    study = StudyConfig.model_validate_json(study_json)
    config = study.train_config(trial_config["hypothesis"], trial_config["kl_weight"], trial_config["lr"],
                                seed=study.search.seed)
    faults.set_context(phase="tune", hypothesis=config.hypothesis, index=trial_config.get("index"))
    _run_trial(lambda workdir, resume: train(config, _dataset(data_path), _report_to_tune, checkpoint=resume,
                                             workdir=workdir), "maskvae-trial-", study.objective.metric)


def final_trial(trial_config: dict[str, Any], *, study_json: str, data_path: str) -> None:
    from .final_run import run_final

    study = StudyConfig.model_validate_json(study_json)
    run = trial_config["run"]
    faults.set_context(phase="final", hypothesis=run["hypothesis"], seed=run["seed"])
    _run_trial(lambda workdir, resume: run_final(study, run, _dataset(data_path), _report_to_tune, workdir, resume),
               "maskvae-final-", study.objective.metric)


# ------------------------------------------------------------------------------------------
# Search and scheduling

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

    def _for(self, trial) -> AsyncHyperBandScheduler:
        hypothesis = trial.config["hypothesis"]
        if hypothesis not in self._by_hypothesis:
            self._by_hypothesis[hypothesis] = AsyncHyperBandScheduler(**self._settings)
        return self._by_hypothesis[hypothesis]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

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


# ------------------------------------------------------------------------------------------
# Events -> listeners (MLflow, progress), from the driver

def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Final-phase trials carry their settings under "run" (one grid point each); tuning trials are flat."""
    return dict(config["run"]) if "run" in config else dict(config)


class ListenerCallback(Callback):
    def __init__(self, phase: str, listener: TrialListener):
        self.phase = phase
        self.listener = listener

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the tuner with its callbacks; the listeners (MLflow client, terminal) belong
        # to the driver process and are re-attached on restore.
        return {"phase": self.phase, "listener": None}

    def on_trial_start(self, iteration, trials, trial, **info):
        if self.listener is None:
            return
        self.listener.trial_started(self.phase, trial.trial_id, flat_config(trial.config), trial.num_failures + 1)

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self.listener is None:
            return
        self.listener.trial_started(self.phase, trial.trial_id, flat_config(trial.config), trial.num_failures + 1)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.listener is None:
            return
        self.listener.trial_result(self.phase, trial.trial_id, flat_config(trial.config), dict(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.listener is None:
            return
        result = dict(trial.last_result or {})
        failure = result.get("failure")  # a trial that stopped itself (non-finite loss) is a failure
        self.listener.trial_finished(self.phase, trial.trial_id, flat_config(trial.config),
                                     "FAILED" if failure else "FINISHED", failure, result, _checkpoint_path(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.listener is None:
            return
        self.listener.trial_finished(self.phase, trial.trial_id, flat_config(trial.config), "FAILED", _error_text(trial),
                                     dict(trial.last_result or {}), _checkpoint_path(trial))


def _checkpoint_path(trial) -> str | None:
    checkpoint = trial.checkpoint
    return checkpoint.path if checkpoint is not None else None


def _error_text(trial) -> str:
    try:
        path = trial.error_file
        if path and Path(path).exists():
            lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
            return "\n".join(lines[-6:])
    except Exception:
        pass
    return "trial failed (no error text recorded)"


# ------------------------------------------------------------------------------------------
# Tuners

def _trial_dirname(trial) -> str:
    config = flat_config(trial.config)
    hypothesis = config.get("hypothesis", "trial").replace("/", "-").replace("+", "_")
    suffix = f"-seed{config['seed']}" if "run" in trial.config else ""
    return f"{hypothesis}{suffix}-{trial.trial_id}"


def _trial_name(trial) -> str:
    config = flat_config(trial.config)
    suffix = f"/seed{config['seed']}" if "run" in trial.config else f"#{config['index']}" if "index" in config else ""
    return f"{config.get('hypothesis', 'trial')}{suffix}:{trial.trial_id}"


def _resources(config: StudyConfig) -> dict[str, float]:
    return {"cpu": config.resources.cpus_per_trial, "gpu": config.resources.gpus_per_trial}


def _run_config(config: StudyConfig, storage_path: str, name: str, callbacks: list[Callback]) -> tune.RunConfig:
    return tune.RunConfig(
        name=name, storage_path=storage_path, callbacks=callbacks, verbose=0,
        failure_config=tune.FailureConfig(max_failures=config.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    )


def tuning_tuner(config: StudyConfig, data_path: str, storage_path: str, listener: TrialListener,
                 trainable: Callable[[dict[str, Any]], None] | None = None) -> tune.Tuner:
    """The tuning phase's Tuner. `trainable` replaces the trainer (the orchestration benchmark's trivial
    trial); by default each trial is `tune_trial` on this study's dataset."""
    if trainable is None:
        trainable = tune.with_parameters(tune_trial, study_json=config.model_dump_json(), data_path=data_path)
    trainable = tune.with_resources(trainable, _resources(config))
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
            reuse_actors=True, max_concurrent_trials=default_concurrency(config),
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname,
        ),
        run_config=_run_config(config, storage_path, TUNE_EXPERIMENT, [ListenerCallback("tune", listener)]),
    )


def final_tuner(config: StudyConfig, runs: list[dict[str, Any]], data_path: str, storage_path: str,
                listener: TrialListener) -> tune.Tuner:
    trainable = tune.with_resources(
        tune.with_parameters(final_trial, study_json=config.model_dump_json(), data_path=data_path), _resources(config)
    )
    return tune.Tuner(
        trainable,
        param_space={"run": tune.grid_search(runs)},
        tune_config=tune.TuneConfig(
            reuse_actors=True, max_concurrent_trials=default_concurrency(config),
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname,
        ),
        run_config=_run_config(config, storage_path, FINAL_EXPERIMENT, [ListenerCallback("final", listener)]),
    )


def saved_search(storage_path: str) -> HypothesisSearch | None:
    """The searcher state Tune saved with the tuning experiment (every Optuna study, as of the last snapshot)."""
    import glob

    files = sorted(glob.glob(f"{experiment_path(storage_path, TUNE_EXPERIMENT)}/{Searcher.CKPT_FILE_TMPL.format('*')}"))
    if not files:
        return None
    with open(files[-1], "rb") as handle:
        return HypothesisSearch.from_state(pickle.load(handle)["search"])


def experiment_path(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}"


def can_restore(storage_path: str, name: str) -> bool:
    return tune.Tuner.can_restore(experiment_path(storage_path, name))


def restore_tuner(config: StudyConfig, storage_path: str, name: str, data_path: str, listener: TrialListener) -> tune.Tuner:
    trial_fn = tune_trial if name == TUNE_EXPERIMENT else final_trial
    trainable = tune.with_resources(
        tune.with_parameters(trial_fn, study_json=config.model_dump_json(), data_path=data_path), _resources(config)
    )
    tuner = tune.Tuner.restore(experiment_path(storage_path, name), trainable, resume_unfinished=True,
                               resume_errored=True)
    # Callbacks are not restored with the tuner: re-attach the driver's listeners.
    tuner._local_tuner._run_config.callbacks = [ListenerCallback(name, listener)]
    return tuner


def quiet_tune_output() -> None:
    """maskvae prints one line per trial itself; Tune's tables and per-failure tracebacks would bury
    them (the full error text stays in each trial's error.txt and on its MLflow run)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Snapshots after every checkpoint are what makes resume exact; the warning about them is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    logging.getLogger("ray.tune.tune").setLevel(logging.WARNING)


def fit(tuner: tune.Tuner, storage_path: str, name: str, with_history: bool = False) -> list[dict[str, Any]]:
    """Run (or finish) a tuner, then read every trial's recorded state back from the experiment directory."""
    quiet_tune_output()
    tuner.fit()
    return results(storage_path, name, with_history)


def results(storage_path: str, name: str, with_history: bool = False) -> list[dict[str, Any]]:
    """The recorded results of an experiment, without running anything (optionally every epoch's)."""
    analysis = tune.ExperimentAnalysis(experiment_path(storage_path, name))
    frames = analysis.trial_dataframes if with_history else {}
    rows = []
    for trial in analysis.trials:
        history = frames.get(trial.trial_id)
        rows.append({
            "history": history.to_dict("records") if history is not None else [],
            "trial_id": trial.trial_id, "config": flat_config(trial.config), "metrics": dict(trial.last_result or {}),
            "attempts": trial.num_failures + 1,
            "checkpoint": trial.checkpoint, "status": trial.status,
            "error": _error_text(trial) if trial.status == "ERROR" else (trial.last_result or {}).get("failure"),
            "path": trial.path,
        })
    return rows


def local_checkpoint(checkpoint: Checkpoint, destination: Path) -> Path:
    """A local directory with the checkpoint's files (downloaded when storage is an object store)."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return Path(checkpoint.path)
    return Path(checkpoint.to_directory(str(destination)))
