"""Worker side: the Ray trainables, a few lines each around `train()` and the final run, plus the
per-trial gauges the dashboard shows."""
from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import Checkpoint

from study.config.runs import FinalRun
from study.config.study import StudyConfig
from study.orchestration.cluster import node_id
from study.search.objective import finite_or_none
from study.search.trials import Phase, PhaseName
from study.training import faults

@functools.cache
def _dataset(path: str):
    """One FaceData per worker process (memory-mapped shards), reused across trials with actor reuse."""
    from data.loader import FaceData

    return FaceData.load(path)


# Dashboard view of trials: each trial runs in its own actor (see `trial_actor_class`), and these
# per-trial gauges (Ray exports them as ray_maskvae_trial_* on every node's metrics endpoint, which
# Prometheus scrapes and the dashboard's Grafana panels show) carry the hypothesis and the trial
# name; each trial's first report also names it in its actor's log.
_TRIAL_GAUGE_SPECS = {
    "images_per_s": ("maskvae_trial_images_per_second", "Training throughput of the trial's last epoch (images/s)."),
    "epoch": ("maskvae_trial_epoch", "Epochs the trial has finished."),
    "val_objective": ("maskvae_trial_objective", "Validation objective of the trial's last epoch."),
}
_TRIAL_GAUGE_TAGS = ("hypothesis", "trial", "phase")


@functools.cache
def _gauge(name: str, description: str):
    """One gauge object per metric and worker process: every trial the process runs sets it."""
    from ray.util.metrics import Gauge

    return Gauge(name, description=description, tag_keys=_TRIAL_GAUGE_TAGS)


@dataclass
class TrialContext:
    """Who the running trial is, set where it starts (`tune_trial`, `final_trial`): its reports,
    gauges, log line and failpoints read it here instead of parsing it back out of a trial name."""

    phase: PhaseName
    hypothesis: str
    index: int | None = None
    seed: int | None = None
    # Said once with every report: how the trial resumed (a skipped checkpoint, a fresh start).
    notes: dict[str, Any] = field(default_factory=dict)
    announced: bool = False

    def __post_init__(self) -> None:
        where = {"index": self.index} if self.seed is None else {"seed": self.seed}
        faults.set_context(phase=self.phase, hypothesis=self.hypothesis, **where)

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        payload = {**metrics, **self.notes, "node_id": node_id()}
        checkpoint = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        self._export_metrics(metrics)
        tune.report(payload, checkpoint=checkpoint)
        faults.fire("after_report", epoch=int(metrics.get("epoch", 0)),
                    handlers={"corrupt_and_exit": _corrupt_latest_persisted_checkpoint})

    def _tags(self) -> dict[str, str] | None:
        """hypothesis / Tune's trial name (`experiments._trial_name`) / phase of this trial."""
        try:
            name = tune.get_context().get_trial_name()
        except Exception:  # not inside a Tune trial (a direct call in a test): nothing to label
            return None
        if not name:
            return None
        return {"hypothesis": self.hypothesis, "trial": name, "phase": self.phase}

    def _export_metrics(self, metrics: dict[str, float]) -> None:
        tags = self._tags()
        if tags is None:
            return
        if not self.announced:
            self.announced = True
            line = f"maskvae {tags['phase']} trial {tags['trial']} (hypothesis {tags['hypothesis']}) on node {node_id()}"
            # stderr is the log tab the dashboard opens by default; stdout keeps `ray logs` users covered.
            print(line, flush=True)
            print(line, file=sys.stderr, flush=True)
        try:
            for key, (name, description) in _TRIAL_GAUGE_SPECS.items():
                value = finite_or_none(metrics.get(key))
                if value is not None:
                    _gauge(name, description).set(value, tags=tags)
        except Exception as error:  # a dashboard gauge is never worth a failed trial
            logging.getLogger(__name__).warning("maskvae: trial metrics not exported: %s", error)


def _corrupt_latest_persisted_checkpoint() -> None:
    """The "corrupt_and_exit" failpoint: truncate the newest persisted checkpoint, as a crash
    mid-write on shared storage would, then die."""
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
    os._exit(137)


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


def _run_trial(context: TrialContext, body, prefix: str, metric: str) -> None:
    """Resume from the newest readable checkpoint; a corrupted one is skipped, and the trial says so."""
    from study.training.checkpoint import CheckpointError, load_checkpoint

    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        for candidate in _resume_candidates(tune.get_checkpoint()):
            if candidate is None:
                if skipped:
                    context.notes["checkpoint_note"] = f"no readable checkpoint ({'; '.join(skipped)}): restarted from scratch"
                return _guard_non_finite(context, body, Path(workdir), None, metric)
            with candidate.as_directory() as resume_dir:
                try:
                    load_checkpoint(Path(resume_dir))
                except CheckpointError as error:
                    skipped.append(str(error))
                    continue
                if skipped:
                    context.notes["checkpoint_note"] = (f"skipped unreadable checkpoint(s) ({'; '.join(skipped)}); "
                                                       f"resumed from {candidate.path.rstrip('/').rsplit('/', 1)[-1]}")
                return _guard_non_finite(context, body, Path(workdir), Path(resume_dir), metric)


def _guard_non_finite(context: TrialContext, body, workdir: Path, resume_dir: Path | None, metric: str) -> None:
    """A NaN/Inf loss ends the trial with its reason (no retry: it would diverge again)."""
    from study.training.trainer import NonFiniteLossError

    try:
        body(workdir, resume_dir)
    except NonFiniteLossError as error:
        # Tune requires the metric in every result: NaN, which the searcher records as FAIL.
        tune.report({"failure": str(error), metric: float("nan"), **context.notes})


def tune_trial(trial_config: dict[str, Any], *, study_json: str, data_path: str) -> None:
    from study.training.trainer import train

    study = StudyConfig.model_validate_json(study_json)
    config = study.trial_config(trial_config["hypothesis"], trial_config["kl_weight"], trial_config["lr"],
                                seed=study.search.seed)
    context = TrialContext(Phase.TUNE, config.hypothesis, index=trial_config.get("index"))
    _run_trial(context, lambda workdir, resume: train(config, _dataset(data_path), context.report, checkpoint=resume,
                                                      workdir=workdir), "maskvae-trial-", study.objective.metric)


def final_trial(trial_config: dict[str, Any], *, study_json: str, data_path: str) -> None:
    from study.training.final_run import run_final

    study = StudyConfig.model_validate_json(study_json)
    run = FinalRun(**trial_config)
    context = TrialContext(Phase.FINAL, run.hypothesis, seed=run.seed)
    _run_trial(context, lambda workdir, resume: run_final(study, run, _dataset(data_path), context.report,
                                                          workdir, resume), "maskvae-final-", study.objective.metric)




ACTOR_CLASS_NAMES = {Phase.TUNE: "TuneTrial", Phase.FINAL: "FinalRun"}


def trial_actor_class(trainable, phase: str, reused: bool) -> type:
    """A function trainable as the class Tune runs in its actors, named for the dashboard's Actors
    page: class `TuneTrial`/`FinalRun`, and a repr (the page's Repr column, which Ray reads once,
    when the actor starts) naming the trial, e.g. `tune ssim+l2/mask#1:5c1d2_00003`. An actor that
    Tune reuses for later trials would keep the first trial's name, so its repr says only the phase."""
    from ray.tune.trainable import wrap_function

    base = wrap_function(trainable)

    def __repr__(self) -> str:
        info = getattr(self, "_trial_info", None)
        if reused or info is None or not info.trial_name:
            return f"{phase} trials (reused actor; each trial's name is in its log)"
        return f"{phase} {info.trial_name}"

    return type(ACTOR_CLASS_NAMES.get(phase, "Trial"), (base,), {"__repr__": __repr__, "__module__": __name__})
