"""The study driver: preflight, tuning, final seeds, ranking and report; resume from any phase."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import UserInputError
from .hypotheses import slug
from .events import Listeners
from .listeners import MlflowListener, ProgressPrinter
from .state import StudyState
from .study_config import StudyConfig
from .tracking import MlflowTracker

RESULTS_DIR = "results"
SCORES_FILE = "results/scores.parquet"
TRIALS_FILE = "results/trials.parquet"
GRIDS_DIR = "results/grids"
OPTUNA_FILE = "results/optuna_trials.parquet"
_VERSIONED = ("maskvae", "torch", "ray", "mlflow", "optuna", "lpips", "pytorch-msssim", "pyarrow")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        versions["code"] = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                          cwd=Path(__file__).parent, timeout=5).stdout.strip() or versions["maskvae"]
    except (OSError, subprocess.SubprocessError):
        versions["code"] = versions["maskvae"]
    return versions


def default_out_dir(config: StudyConfig) -> Path:
    return Path("runs") / f"{config.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


# ------------------------------------------------------------------------------------------
# Preflight: everything that can fail fast fails here, before any training.

def ensure_dataset(config: StudyConfig, progress: bool = True) -> str:
    from data.shards import verify

    from .study_config import _exists

    path = config.data.path
    synth = config.data.synthesize_if_missing
    if synth is not None and not _exists(path):
        from data.prepare import synthesize

        print(f"making {synth.count} synthetic {synth.size}px faces in {path} (first use)")
        synthesize(Path(path), count=synth.count, size=synth.size, seed=synth.seed, progress=progress)
    verify(path)  # content hashes: a shard changed after preparation stops the study here, by name
    # Trials run in other processes (and other nodes) with other working directories.
    return path if "://" in path else str(Path(path).resolve())


def _writable_problem(field: str, path: Path) -> str | None:
    """Whether `path` could be created and written, without creating anything."""
    import os

    probe = Path(path).absolute()
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{field}: {path}: cannot be created ({probe} is not a directory)"
    if not os.access(probe, os.W_OK):
        return f"{field}: {path}: not writable ({probe} is read-only)"
    return None


def preflight(config: StudyConfig, out_dir: Path) -> dict[str, Any]:
    """Checks that create nothing: storage writable, tracking reachable, LPIPS weights present."""
    from models.perceptual import lpips_available, unavailable_message

    from .tracking import preflight as tracking_preflight

    problems = [p for p in (
        _writable_problem("--out", out_dir),
        _writable_problem("ray.storage_path", Path(config.ray.storage_path))
        if config.ray.storage_path and "://" not in config.ray.storage_path else None,
    ) if p]
    if problems:
        raise UserInputError(problems, title="preflight failed")
    uri = tracking_preflight(config.mlflow.tracking_uri, config.mlflow.preflight_timeout_s)
    lpips_ok = lpips_available()
    if not lpips_ok:
        if config.final.lpips == "require":
            raise UserInputError([f"final.lpips: require: {unavailable_message()}"], title="preflight failed")
        if config.final.lpips == "auto":
            print(f"note: LPIPS will be reported as unavailable. {unavailable_message()}")
    return {"tracking_uri": uri, "lpips_available": lpips_ok and config.final.lpips != "off"}


# ------------------------------------------------------------------------------------------

def new_study(config: StudyConfig, out_dir: Path | None) -> tuple[StudyState, Path]:
    out_dir = Path(out_dir) if out_dir else default_out_dir(config)
    if (out_dir / "study.json").exists():
        raise UserInputError([f"--out: {out_dir} already holds a study; resume it with `maskvae study resume {out_dir}`"])
    state = StudyState(
        study_id=uuid.uuid4().hex[:12], name=config.name, created=dt.datetime.now(dt.timezone.utc).isoformat(),
        config=config.model_dump(mode="json"), experiment=config.mlflow.experiment or config.name,
        versions=package_versions(),
    )
    return state, out_dir


def run_study(config: StudyConfig, out_dir: Path | None = None) -> Path:
    state, out_dir = new_study(config, out_dir)
    checks = preflight(config, out_dir)
    state.data_path = ensure_dataset(config)
    state.storage_path = config.ray.storage_path or str((out_dir / "ray").resolve())
    state.tracking_uri = checks["tracking_uri"]
    state.save(out_dir)
    return execute(state, config, out_dir, checks["lpips_available"])


def resume_study(out_dir: Path) -> Path:
    state = StudyState.load(out_dir)
    config = StudyConfig.model_validate(state.config)
    if state.phase == "done":
        print(f"study {state.name} ({out_dir}) is already complete; nothing to do. Report: {out_dir / 'REPORT.md'}")
        return out_dir
    checks = preflight(config, out_dir)
    ensure_dataset(config)
    return execute(state, config, out_dir, checks["lpips_available"])


def _parent_tags(state: StudyState, hypothesis: str, dataset_hash: str) -> dict[str, str]:
    from .hypotheses import parse_hypothesis

    parsed = parse_hypothesis(hypothesis)
    return {
        "maskvae.loss": parsed.loss, "maskvae.mask": str(parsed.mask).lower(), "maskvae.dataset_hash": dataset_hash,
        "maskvae.code_version": state.versions.get("code", ""), "maskvae.study": state.name,
        **{f"maskvae.version.{k}": v for k, v in state.versions.items()},
    }


def execute(state: StudyState, config: StudyConfig, out_dir: Path, lpips_available: bool) -> Path:
    from data.shards import load_manifest

    from . import ray_backend

    manifest = load_manifest(state.data_path)
    hypotheses = [h.name for h in config.hypotheses()]
    # Ray first: the shared-storage check needs the cluster's nodes, and must fail before any run exists.
    state.dashboard_url = ray_backend.start_ray(config.ray) or state.dashboard_url
    _treat_sigterm_as_ctrl_c()  # after ray.init, which installs its own fatal-signal handlers
    try:
        _require_shared_storage(state, config)
    except UserInputError:
        ray_backend.stop_ray()
        raise
    tracker = MlflowTracker(state.tracking_uri, state.experiment, state.study_id)
    for hypothesis in hypotheses:
        if not state.parents.get(hypothesis):
            state.parents[hypothesis] = tracker.hypothesis_run(hypothesis, _parent_tags(state, hypothesis, manifest.content_hash))
    state.save(out_dir)
    totals = {f"tune:{h}": config.search.trials_per_hypothesis for h in hypotheses}
    totals.update({f"final:{h}": config.final.seeds for h in hypotheses})
    mlflow_listener = MlflowListener(tracker, state.parents)
    listener = Listeners(mlflow_listener, ProgressPrinter(totals, config.objective.metric))
    if state.dashboard_url:
        print(f"Ray dashboard: {state.dashboard_url}")
    try:
        if state.phase == "tune":
            print(f"tuning {len(hypotheses)} hypotheses x {config.search.trials_per_hypothesis} trials "
                  f"({config.train.epochs} epochs max, {config.scheduler.kind})")
            rows = _fit_phase(config, state, ray_backend.TUNE_EXPERIMENT, listener,
                              lambda: ray_backend.tuning_tuner(config, state.data_path, state.storage_path, listener),
                              mlflow_listener)
            _write_trials(out_dir, rows, config)
            search = ray_backend.saved_search(state.storage_path)
            if search is not None:
                pd.DataFrame(search.trials_table()).to_parquet(out_dir / OPTUNA_FILE, index=False)
            from .selection import best_per_hypothesis

            state.best = best_per_hypothesis(rows, config.objective.metric, config.objective.mode)
            missing = [h for h in hypotheses if h not in state.best]
            if missing:
                print(f"warning: no successful trial for {', '.join(missing)}: left out of the final phase")
            state.phase = "final"
            state.save(out_dir)
        if state.phase == "final":
            from .selection import final_runs

            runs = final_runs(state.best, hypotheses, config.final.seeds, config.search.seed)
            if not runs:
                raise RuntimeError("every tuning trial failed, so there is nothing to retrain; the errors are in "
                                   f"{out_dir / TRIALS_FILE} and `maskvae study status {out_dir}`")
            print(f"final phase: {len(runs)} runs ({config.final.seeds} seeds x {len(state.best)} hypotheses) + test evaluation")
            rows = _fit_phase(config, state, ray_backend.FINAL_EXPERIMENT, listener,
                              lambda: ray_backend.final_tuner(config, runs, state.data_path, state.storage_path, listener),
                              mlflow_listener)
            _collect_final(out_dir, rows, tracker, state)
            state.phase = "rank"
            state.save(out_dir)
    except KeyboardInterrupt:
        closed = tracker.close_open_runs("KILLED")
        state.save(out_dir)
        print(f"\nstopped: study state saved ({closed} open MLflow runs marked KILLED). Resume with:\n"
              f"  maskvae study resume {out_dir}")
        raise
    finally:
        ray_backend.stop_ray()
    if state.phase == "rank":
        from .reporting import publish

        publish(out_dir, state, config, manifest, tracker, lpips_available)
        # After a driver crash, a trial started after Tune's last snapshot is unknown to the restored
        # experiment (Tune re-suggests it under a new id): its orphaned MLflow run is marked KILLED.
        dangling = tracker.close_open_runs("KILLED")
        if dangling:
            print(f"marked {dangling} MLflow runs KILLED: their trials were lost with the driver and re-run")
        state.phase = "done"
        state.save(out_dir)
    return out_dir


def _require_shared_storage(state: StudyState, config: StudyConfig) -> None:
    """On a cluster whose trials can land on other hosts, local paths would split the study."""
    import os

    from . import ray_backend
    from .storage_check import NodeFacts, require_shared_storage

    nodes = NodeFacts.from_ray_nodes(ray_backend.cluster_nodes())
    driver = ray_backend.node_id()
    # Inside a Ray job the driver's own address can differ from the node table's: use the table.
    driver_host = next((node.host for node in nodes if node.node_id == driver), "")
    require_shared_storage({"data.path": state.data_path, "ray.storage_path": state.storage_path}, nodes,
                           driver_host=driver_host, cpus_per_trial=config.resources.cpus_per_trial,
                           gpus_per_trial=config.resources.gpus_per_trial,
                           existing_cluster=bool(config.ray.address or os.environ.get("RAY_ADDRESS")))


def _treat_sigterm_as_ctrl_c() -> None:
    """SIGTERM (a scheduler, `kill`, a closing terminal) stops the study the way Ctrl-C does: Tune
    saves its state, open MLflow runs are marked KILLED and the resume command is printed."""
    import os
    import signal

    if threading_is_main():
        signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _fit_phase(config: StudyConfig, state: StudyState, name: str, listener, make_tuner,
               mlflow_listener: MlflowListener) -> list[dict[str, Any]]:
    from . import ray_backend

    restored = ray_backend.can_restore(state.storage_path, name)
    if restored:
        tuner = ray_backend.restore_tuner(config, state.storage_path, name, state.data_path, listener)
    else:
        tuner = make_tuner()
    rows = ray_backend.fit(tuner, state.storage_path, name, with_history=restored)
    unfinished = [row for row in rows if row["status"] not in ("TERMINATED", "ERROR")]
    if unfinished:
        raise KeyboardInterrupt(f"{len(unfinished)} trials did not finish")
    if restored:
        # Trials that ended while no driver was listening (it was killed) fire no callback on
        # resume: bring their MLflow runs in line with what Ray recorded.
        from .status import replay_phase

        replay_phase(mlflow_listener, name, rows)
    return rows


def _write_trials(out_dir: Path, rows: list[dict[str, Any]], config: StudyConfig) -> None:
    metric = config.objective.metric
    records = [{
        "hypothesis": row["config"]["hypothesis"], "trial_id": row["trial_id"],
        "kl_weight": row["config"]["kl_weight"], "lr": row["config"]["lr"],
        "objective": row["metrics"].get(metric), "epochs": row["metrics"].get("epoch"),
        "status": "FAILED" if row["error"] else row["status"], "error": row["error"],
        "node_id": row["metrics"].get("node_id"),
    } for row in rows]
    (out_dir / RESULTS_DIR).mkdir(parents=True, exist_ok=True)
    pd.DataFrame.from_records(records).to_parquet(out_dir / TRIALS_FILE, index=False)


def _collect_final(out_dir: Path, rows: list[dict[str, Any]], tracker: MlflowTracker, state: StudyState) -> None:
    """Gather per-image scores, grids and models from the final runs' last checkpoints."""
    from . import ray_backend
    from .final_run import GRID_FILE, MODEL_DIR, SCORES_FILE as RUN_SCORES

    frames = []
    for row in sorted(rows, key=lambda r: (r["config"]["hypothesis"], r["config"]["seed"])):
        if row["error"] or not row["checkpoint"]:
            print(f"warning: final run {row['config']['hypothesis']} seed {row['config']['seed']} failed: {row['error']}")
            continue
        local = ray_backend.local_checkpoint(row["checkpoint"], out_dir / ".fetch" / row["trial_id"])
        frames.append(pd.read_parquet(local / RUN_SCORES))
        hypothesis, seed = row["config"]["hypothesis"], row["config"]["seed"]
        if seed == min(r["config"]["seed"] for r in rows):
            target = out_dir / "models" / slug(hypothesis)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(local / MODEL_DIR, target)
            grids = out_dir / GRIDS_DIR
            grids.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local / GRID_FILE, grids / f"{slug(hypothesis)}.png")
            tracker.log_artifacts(state.parents.get(hypothesis), target, "model")
    shutil.rmtree(out_dir / ".fetch", ignore_errors=True)
    if not frames:
        raise RuntimeError("every final run failed: nothing to rank")
    pd.concat(frames, ignore_index=True).to_parquet(out_dir / SCORES_FILE, index=False)
