"""The study's phases: tune, final seeds, then rank and publish; resume picks up at any phase."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import threading
import uuid
from pathlib import Path

import pandas as pd

from study.config.study import StudyConfig
from study.driver.collect import collect_final, write_trials
from study.driver.commands import command
from study.driver.layout import StudyLayout
from study.driver.ledger import TrialLedger
from study.driver.preflight import default_out_dir, ensure_dataset, package_versions, preflight
from study.driver.progress import ProgressPrinter
from study.driver.state import StudyState, load_study
from study.errors import UserInputError
from study.orchestration import cluster, experiments
from study.search.selection import best_per_hypothesis, final_runs
from study.search.trials import Listeners, Phase, TrialRecord
from study.tracking.links import absolute_store_uri
from study.tracking.listener import MlflowListener
from study.tracking.naming import claim_names
from study.tracking.replay import replay_records
from study.tracking.tracker import MlflowTracker


def new_study(config: StudyConfig, out_dir: Path | None) -> tuple[StudyState, Path]:
    out_dir = Path(out_dir) if out_dir else default_out_dir(config)
    if StudyLayout(out_dir).state_file.exists():
        raise UserInputError([f"--out: {out_dir} already holds a study; resume it with `maskvae study resume {out_dir}`"])
    state = StudyState(
        study_id=uuid.uuid4().hex[:12], name=config.name, created=dt.datetime.now(dt.timezone.utc).isoformat(),
        config=config.model_dump(mode="json"), experiment=config.mlflow.experiment or config.name,
        versions=package_versions(),
    )
    return state, out_dir


def run_study(config: StudyConfig, out_dir: Path | None = None) -> Path:
    state, out_dir = new_study(config, out_dir)
    port = cluster.dashboard_port(config.ray)  # a taken port is refused before anything is written
    checks = preflight(config, out_dir)
    state.data_path = ensure_dataset(config)
    state.storage_path = config.ray.storage_path or str(StudyLayout(out_dir).ray_storage.resolve())
    state.tracking_uri = absolute_store_uri(checks.tracking_uri)
    fresh = not out_dir.exists()
    state.save(out_dir)
    try:
        return execute(state, config, out_dir, checks.lpips_available, dashboard_port=port)
    except UserInputError:
        if fresh and not any(state.parents.values()):  # refused before any run began: leave no half-made study
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def resume_study(out_dir: Path) -> Path:
    state, config = load_study(out_dir)
    if state.phase == Phase.DONE:
        print(f"study {state.name} ({out_dir}) is already complete; nothing to do. Report: {StudyLayout(out_dir).report}")
        return out_dir
    port = cluster.dashboard_port(config.ray)
    checks = preflight(config, out_dir)
    ensure_dataset(config)
    return execute(state, config, out_dir, checks.lpips_available, dashboard_port=port)


def _start_ray(state: StudyState, config: StudyConfig, out_dir: Path, port: int | None) -> None:
    """Ray, named after the study on the dashboard's Jobs page; prints where the dashboard is."""
    folder = Path(out_dir).resolve().name
    # The default folder, runs/<name>-<time>, already names the study.
    job_name = f"maskvae {folder if folder.startswith(state.name) else f'{state.name} ({folder})'}"
    started = cluster.start_ray(config.ray, port=port, job_name=job_name,
                                metadata={"maskvae_study_id": state.study_id,
                                          "maskvae_study_dir": str(Path(out_dir).resolve())},
                                ray_command=command("ray"))
    state.dashboard_url = started.dashboard_url or state.dashboard_url
    if started.dashboard_url:
        chosen = started.dashboard_url.rstrip("/").rsplit(":", 1)[-1]
        moved = f" ({cluster.FIRST_DASHBOARD_PORT} was taken)" if config.ray.dashboard_port == "auto" \
            and chosen != str(cluster.FIRST_DASHBOARD_PORT) else ""
        hint = f"; {started.token_hint}" if started.token_hint else ""
        print(f"Ray dashboard: {started.dashboard_url}{moved}{hint}")


def _claim_mlflow_names(state: StudyState, config: StudyConfig) -> None:
    """This study's own experiment and registered-model name (`study.tracking.naming`), once."""
    if state.model_name:
        return
    if any(state.parents.values()):  # a study from before per-study names: it keeps its experiment
        state.model_name = state.name
        return
    stamp = dt.datetime.fromisoformat(state.created).astimezone().strftime("%Y%m%d-%H%M%S")
    try:
        state.experiment, state.model_name = claim_names(state.tracking_uri, state.name, state.study_id, stamp,
                                                         config.mlflow.experiment, config.mlflow.artifact_location)
    except Exception as error:  # tracking never stops a study: the tracker warns and sync-mlflow backfills
        print(f"warning: MLflow: could not claim an experiment name ({error.__class__.__name__}); "
              f"using '{state.experiment}'")


def execute(state: StudyState, config: StudyConfig, out_dir: Path, lpips_available: bool,
            dashboard_port: int | None = None) -> Path:
    from data.manifest import load_manifest

    layout = StudyLayout(out_dir)
    manifest = load_manifest(state.data_path)
    hypotheses = [h.name for h in config.hypotheses()]
    # Ray first: the shared-storage check needs the cluster's nodes, and must fail before any run exists.
    _start_ray(state, config, out_dir, dashboard_port)
    _treat_sigterm_as_ctrl_c()  # after ray.init, which installs its own fatal-signal handlers
    try:
        _require_shared_storage(state, config)
    except UserInputError:
        cluster.stop_ray()
        raise
    _claim_mlflow_names(state, config)
    print(f"MLflow: runs go to experiment '{state.experiment}' in {state.tracking_uri}")
    tracker = MlflowTracker(state.tracking_uri, state.experiment, state.study_id,
                            artifact_location=config.mlflow.artifact_location)
    for hypothesis in hypotheses:
        if not state.parents.get(hypothesis):
            state.parents[hypothesis] = tracker.hypothesis_run(hypothesis, state.parent_tags(hypothesis, manifest.content_hash))
    state.save(out_dir)
    totals = {f"tune:{h}": config.search.trials_per_hypothesis for h in hypotheses}
    totals.update({f"final:{h}": config.final.seeds for h in hypotheses})
    mlflow_listener = MlflowListener(tracker, state.parents)
    ledger = TrialLedger(layout.ledger_file, config.objective.metric)
    listener = Listeners(mlflow_listener, ledger,
                         ProgressPrinter(totals, config.objective.metric, config.objective.mode))
    try:
        if state.phase == Phase.TUNE:
            _tune_phase(config, state, layout, hypotheses, listener, mlflow_listener, ledger)
        if state.phase == Phase.FINAL:
            _final_phase(config, state, layout, hypotheses, listener, mlflow_listener, ledger, tracker)
    except KeyboardInterrupt:
        closed = tracker.close_open_runs("KILLED")
        state.save(out_dir)
        print(f"\nstopped: study state saved ({closed} open MLflow runs marked KILLED). Resume with:\n"
              f"  maskvae study resume {out_dir}")
        raise
    finally:
        cluster.stop_ray()
    if state.phase == Phase.RANK:
        from study.driver.publish import publish

        publish(layout, state, config, manifest, tracker, lpips_available)
        # After a driver crash, a trial started after Tune's last snapshot is unknown to the restored
        # experiment (Tune re-suggests it under a new id): its orphaned MLflow run is marked KILLED.
        dangling = tracker.close_open_runs("KILLED")
        if dangling:
            print(f"marked {dangling} MLflow runs KILLED: their trials were lost with the driver and re-run")
        state.phase = Phase.DONE
        state.save(out_dir)
    return out_dir


def _tune_phase(config: StudyConfig, state: StudyState, layout: StudyLayout, hypotheses: list[str], listener,
                mlflow_listener: MlflowListener, ledger: TrialLedger) -> None:
    """Tune every hypothesis, record the trials and each hypothesis's best configuration; then final."""
    print(f"tuning {len(hypotheses)} hypotheses x {config.search.trials_per_hypothesis} trials "
          f"({config.train.epochs} epochs max, {config.scheduler.kind})")
    records = _fit_phase(config, state, experiments.TUNE_EXPERIMENT, listener,
                         lambda: experiments.tuning_tuner(config, state.data_path, state.storage_path, listener),
                         mlflow_listener, ledger)
    write_trials(layout, records, config.objective.metric)
    search = experiments.saved_search(state.storage_path)
    if search is not None:
        pd.DataFrame(search.trials_table()).to_parquet(layout.optuna_trials, index=False)
    state.best = best_per_hypothesis(records, config.objective.metric, config.objective.mode)
    missing = [h for h in hypotheses if h not in state.best]
    if missing:
        print(f"warning: no successful trial for {', '.join(missing)}: left out of the final phase")
    state.phase = Phase.FINAL
    state.save(layout.root)


def _final_phase(config: StudyConfig, state: StudyState, layout: StudyLayout, hypotheses: list[str], listener,
                 mlflow_listener: MlflowListener, ledger: TrialLedger, tracker: MlflowTracker) -> None:
    """Retrain each best configuration with the final seeds, score and collect them; then rank."""
    runs = final_runs(state.best, hypotheses, config.final.seeds, config.search.seed)
    if not runs:
        raise RuntimeError("every tuning trial failed, so there is nothing to retrain; the errors are in "
                           f"{layout.trials} and `maskvae study status {layout.root}`")
    print(f"final phase: {len(runs)} runs ({config.final.seeds} seeds x {len(state.best)} hypotheses) + test evaluation")
    records = _fit_phase(config, state, experiments.FINAL_EXPERIMENT, listener,
                         lambda: experiments.final_tuner(config, runs, state.data_path, state.storage_path, listener),
                         mlflow_listener, ledger)
    collect_final(layout, records, tracker, state, hypotheses)
    state.phase = Phase.RANK
    state.save(layout.root)


def _require_shared_storage(state: StudyState, config: StudyConfig) -> None:
    """On a cluster whose trials can land on other hosts, or on nodes of this host that do not share
    its disk, local paths would split the study."""
    from data.manifest import MANIFEST
    from study.driver.shared_storage import (NodeFacts, local_paths, require_shared_storage, trial_nodes,
                                             unseen_problems, witnesses)

    if config.ray.shared_filesystem:  # the user vouches that every node sees these paths
        return
    nodes = NodeFacts.from_ray_nodes(cluster.cluster_nodes())
    driver = cluster.node_id()
    # Inside a Ray job the driver's own address can differ from the node table's: use the table.
    driver_host = next((node.host for node in nodes if node.node_id == driver), "")
    paths = {"data.path": state.data_path, "ray.storage_path": state.storage_path}
    existing = cluster.joins_existing_cluster(config.ray)
    resources = {"cpus_per_trial": config.resources.cpus_per_trial, "gpus_per_trial": config.resources.gpus_per_trial}
    require_shared_storage(paths, nodes, driver_host=driver_host, existing_cluster=existing, **resources)
    local, targets = local_paths(paths), trial_nodes(nodes, **resources)
    if not existing or not local or not targets:
        return
    with witnesses(local, {"data.path": MANIFEST}) as found:
        answers = cluster.file_digests_on_nodes([witness.file for witness in found], targets)
    problems = unseen_problems(found, answers, nodes)
    if problems:
        raise UserInputError(problems, title="preflight failed: storage is not shared across the cluster")


def _treat_sigterm_as_ctrl_c() -> None:
    """SIGTERM (a scheduler, `kill`, a closing terminal) stops the study the way Ctrl-C does: Tune
    saves its state, open MLflow runs are marked KILLED and the resume command is printed."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))


def _fit_phase(config: StudyConfig, state: StudyState, name: str, listener, make_tuner,
               mlflow_listener: MlflowListener, ledger: TrialLedger) -> list[TrialRecord]:
    restored = experiments.can_restore(state.storage_path, name)
    if restored and name == experiments.FINAL_EXPERIMENT and not experiments.final_runs_intact(state.storage_path):
        # A driver killed as the final phase began can leave a snapshot whose trials lack their run
        # settings; final runs are retrains of recorded best configurations, so they start again.
        print("final phase: its saved experiment is incomplete (the driver stopped as it began); starting it again")
        experiments.discard(state.storage_path, name)
        restored = False
    if restored:
        tuner = experiments.restore_tuner(config, state.storage_path, name, state.data_path, listener)
    else:
        tuner = make_tuner()
    records = experiments.fit(tuner, state.storage_path, name, with_history=restored)
    ledger.replace_phase(name, records)
    unfinished = [record for record in records if not record.ended]
    if unfinished:
        raise KeyboardInterrupt(f"{len(unfinished)} trials did not finish")
    if restored:
        # Trials that ended while no driver was listening (it was killed) fire no callback on
        # resume: bring their MLflow runs in line with what Ray recorded.
        replay_records(mlflow_listener, records)
    return records
