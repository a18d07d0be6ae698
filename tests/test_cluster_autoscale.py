"""Studies on an autoscaling cluster: Ray's own autoscaler with its fake multi-node provider.

One module-scoped cluster from `cluster/local/autoscalecluster.py up` (node types shaped like
cluster/aws.yaml's: a head with no CPUs, GPU worker types that start at zero). Trials ask for a
(fake) GPU, so they can only run on the workers the autoscaler launches for them; torch finds no
CUDA and trains on the CPU. All nodes share this machine's disk; studies 1 and 3 use it
(`ray.shared_filesystem=true`), study 2 keeps its dataset and Ray's storage on S3 (moto's server).

1. An undisturbed study: its demand scales workers up from zero, its trials run there, and the
   idle workers are removed after it.
2. The same study with a worker node preempted mid-trial (its raylet and everything under it
   SIGKILLed): its trials resume from their checkpoints in the bucket on another node, each
   MLflow run ends FINISHED with one history, and the ranking covers the same hypotheses.
3. Two studies submitted as Ray jobs at once: both finish, each in its own MLflow experiment and
   storage prefix, and once both are queued for slots neither waits for the other's whole tuning
   phase (a gate holds every trial at its first epoch until both drivers are tuning).
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.scripts import load_script
from tests.studyproc import StudyProcess, set_args

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HYPOTHESES = {"l2/mask", "l2/nomask"}


def _autoscalecluster():
    return load_script("cluster/local/autoscalecluster.py")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    module = _autoscalecluster()
    state_dir = tmp_path_factory.mktemp("autoscale") / "state"
    state = {}
    environment = pytest.MonkeyPatch()
    try:
        # Every node the autoscaler launches inherits the head's environment: the S3 endpoint and
        # credentials the preemption study's object storage needs.
        for key, value in s3_server.env().items():
            environment.setenv(key, value)
        state = module.up(state_dir, module.DEFAULT_CONFIG)
        yield {"module": module, "state": state, "state_dir": state_dir, "token": Path(state["token_path"]).read_text().strip(),
               "undisturbed": {}}
    finally:
        # The autoscaler's log says why it launched or ended each node; `down` removes Ray's temp dir.
        for log in Path(state.get("ray_temp_root", "/nonexistent")).glob("session_latest/logs/monitor.*"):
            shutil.copy(log, state_dir / "logs")
        module.down(state_dir)
        environment.undo()


def _workers(cluster) -> list[dict]:
    nodes = cluster["module"].lc.alive_nodes(cluster["state"]["dashboard"], cluster["token"])
    return [node for node in nodes if not node["is_head_node"]]


def _wait_workers(cluster, predicate, timeout: float, what: str) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = _workers(cluster)
        if predicate(workers):
            return workers
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; workers: {_workers(cluster)}")


class WorkerWatch:
    """Every worker node seen alive while a study runs (polled once a second)."""

    def __init__(self, cluster):
        self.cluster, self.seen, self.most = cluster, set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                workers = _workers(self.cluster)
            except (OSError, ValueError):
                workers = []
            self.seen |= {node["node_id"] for node in workers}
            self.most = max(self.most, len(workers))
            self._stop.wait(1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def study_options(data: Path | str, tracking: str, name: str, extra: list[str] | None = None) -> list[str]:
    return [
        f"name={name}", f"data.path={data}", "data.synthesize_if_missing=null", "grid.losses=[l2]",
        "grid.masks=[true, false]", "search.trials_per_hypothesis=1", "train.epochs=2", "train.max_train_batches=3",
        "train.max_val_batches=1", "final.seeds=1", "final.grid_faces=4", "scheduler.kind=fifo",
        "train.model.width=0.125", "train.model.latent_dim=16", "train.device=cpu", f"mlflow.tracking_uri={tracking}",
        # A (fake) GPU per trial: only the autoscaler's GPU workers can run one.
        "resources.cpus_per_trial=1", "resources.gpus_per_trial=1", "resources.max_concurrent_trials=2",
        "resources.max_failures=3", "ray.shared_filesystem=true", *(extra or []),
    ]


def _finish(study: StudyProcess, timeout: float) -> int:
    try:
        return study.wait(timeout)
    except subprocess.TimeoutExpired:
        study.kill()
        study.wait(30)
        raise AssertionError(f"the study did not finish in {timeout:.0f} s:\n{study.output[-4000:]}") from None


def _client_env(cluster) -> dict[str, str]:
    return cluster["module"].client_env(cluster["state"])


def _ranked(out: Path) -> set[str]:
    found = set()
    for path in (out / "results").glob("ranking_*.csv"):
        found |= set(pd.read_csv(path)["hypothesis"])
    return found


def _runs(tracking: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    return client, client.search_runs([found.experiment_id], max_results=1000)


def _tag(run, name: str) -> str | None:
    return run.data.tags.get(name)


def test_demand_scales_workers_up_from_zero_and_idle_workers_down(cluster, synthetic_dataset, tmp_path):
    assert _workers(cluster) == [], "the cluster starts with the head only"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "study"
    args = ["study", "run", "--address", cluster["state"]["gcs_address"], "--out", str(out)]
    args += set_args(study_options(synthetic_dataset, tracking, "autoscale"))
    started = time.monotonic()
    watch = WorkerWatch(cluster)
    study = StudyProcess(args, cwd=tmp_path, env=_client_env(cluster))
    try:
        assert _finish(study, 300) == 0, study.output[-4000:]
    finally:
        watch.stop()
    study_s = time.monotonic() - started
    trials = pd.read_parquet(out / "results" / "trials.parquet")
    assert set(trials["hypothesis"]) == HYPOTHESES and (trials["status"] == "TERMINATED").all()
    assert watch.most >= 1
    assert set(trials["node_id"]) <= watch.seen, "every trial ran on a worker the autoscaler launched"
    _, runs = _runs(tracking, "autoscale")
    assert runs and all(run.info.status == "FINISHED" for run in runs)
    finals = [r for r in runs if _tag(r, "maskvae.phase") == "final"]
    assert len(finals) == 2 and {_tag(r, "maskvae.node_id") for r in finals} <= watch.seen
    ranked = _ranked(out)
    assert ranked == HYPOTHESES
    cluster["undisturbed"]["ranked"] = ranked
    # idle_timeout_minutes 0.2: idle workers go 12 s after their last trial, checked every 5 s.
    _wait_workers(cluster, lambda workers: not workers, 120, "idle workers to be removed")
    print(f"\nautoscale: study {study_s:.0f} s with up to {watch.most} workers ({len(watch.seen)} launched), "
          f"back to zero workers {time.monotonic() - started - study_s:.0f} s after it")


def _running_trial_with_checkpoint(tracking: str, experiment: str, bucket, prefix: str) -> tuple[str, str] | None:
    """(trial id, node id) of a tuning trial that has logged epoch 1 only, is still running, and
    whose epoch-1 checkpoint is in the bucket."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    checkpointed = {key.split("/checkpoint_000000/")[0].rsplit("/", 1)[-1].rsplit("-", 1)[-1]
                    for key in bucket.keys(f"{prefix}/tune/") if "/checkpoint_000000/" in key}
    for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'"):
        trial, node = _tag(run, "maskvae.trial_id"), _tag(run, "maskvae.node_id")
        if _tag(run, "maskvae.phase") != "tune" or trial not in checkpointed or not node:
            continue
        if [m.step for m in client.get_metric_history(run.info.run_id, "epoch")] == [1]:
            return trial, node
    return None


def test_a_preempted_worker_loses_nothing(cluster, s3, tmp_path):
    """Dataset and Ray's storage on S3: the preempted trial resumes from its object-store checkpoint."""
    from study.cli import main

    if not cluster["undisturbed"]:
        pytest.skip("needs the undisturbed study's ranking (test_demand_scales_workers_up_from_zero...)")
    data, storage = s3.uri("data/faces"), s3.uri("studies/preempted")
    assert main(["data", "synth", data, "--count", "160", "--size", "32", "--no-progress"]) == 0
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "study"
    args = ["study", "run", "--address", cluster["state"]["gcs_address"], "--out", str(out)]
    args += set_args(study_options(data, tracking, "preempted", [f"ray.storage_path={storage}",
                                                                "ray.shared_filesystem=false"]))
    # Epoch 2 starts late, so the trial is still running when its node goes.
    slow = [{"point": "epoch_start", "phase": "tune", "epoch": 2, "action": "sleep", "seconds": 10.0}]
    study = StudyProcess(args, cwd=tmp_path, faults=slow, env=_client_env(cluster))
    found = {}
    last_look = {"t": 0.0}

    def checkpointed() -> bool:
        if time.monotonic() - last_look["t"] < 1.0:  # MLflow and the bucket, read at most once a second
            return False
        last_look["t"] = time.monotonic()
        hit = _running_trial_with_checkpoint(tracking, "preempted", s3, "studies/preempted")
        if hit:
            found["trial"], found["node"] = hit
        return hit is not None

    try:
        study.wait_for(checkpointed, timeout=300, what="a tuning trial with its epoch-1 checkpoint")
        killed = cluster["module"].preempt(cluster["state_dir"], found["node"])
        assert killed
        assert _finish(study, 300) == 0, study.output[-4000:]
    finally:
        if study.process.poll() is None:
            study.kill()

    trials = pd.read_parquet(out / "results" / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all(), trials
    assert found["node"] not in {node["node_id"] for node in _workers(cluster)}, "the preempted node stays gone"
    victim_id = found["trial"]
    finished_on = trials.set_index("trial_id").loc[victim_id, "node_id"]
    assert finished_on != found["node"], "the preempted trial finished on another node"
    client, runs = _runs(tracking, "preempted")
    assert runs and all(run.info.status == "FINISHED" for run in runs), [(r.info.run_name, r.info.status) for r in runs]
    victim = next(r for r in runs if _tag(r, "maskvae.phase") == "tune" and _tag(r, "maskvae.trial_id") == victim_id)
    assert _tag(victim, "maskvae.attempt") == "2"
    steps = [m.step for m in client.get_metric_history(victim.info.run_id, "epoch")]
    assert sorted(steps) == [1, 2], "one history: epoch 1 is not logged again by the retry"
    starts = {m.value for m in client.get_metric_history(victim.info.run_id, "start_epoch")}
    assert 1.0 in starts, f"the retry resumed from the epoch-1 checkpoint, not from scratch ({starts})"
    assert _ranked(out) == cluster["undisturbed"]["ranked"]


def _busy_windows(runs, phases: tuple[str, ...] = ("tune", "final")) -> list[tuple[float, float]]:
    """When a study had a trial (or final) run going (MLflow start to end, seconds)."""
    return [(r.info.start_time / 1000, r.info.end_time / 1000) for r in runs
            if _tag(r, "maskvae.phase") in phases and r.info.end_time]


def _wait_tuning(tracking: str, jobs: dict, client, timeout: float) -> dict[str, float]:
    """Wait until every study's driver has opened its hypothesis runs (it starts Tune right after);
    returns when each did (MLflow start time, seconds)."""
    from mlflow import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=tracking)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        since = {}
        for name in jobs:
            found = mlflow_client.get_experiment_by_name(name)
            runs = mlflow_client.search_runs([found.experiment_id]) if found else []
            opened = [run.info.start_time / 1000 for run in runs if run.info.run_name in HYPOTHESES]
            if len(opened) == len(HYPOTHESES):
                since[name] = max(opened)
        if len(since) == len(jobs):
            return since
        ended = [name for name, job in jobs.items() if client.get_job_status(job).is_terminal()]
        assert not ended, f"{ended} ended before tuning:\n" + "\n".join(client.get_job_logs(jobs[n])[-3000:] for n in ended)
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for both studies to start tuning")


def _overlap(first: list[tuple[float, float]], second: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(a_end, b_end) - max(a_start, b_start)) for a_start, a_end in first for b_start, b_end in second)


def test_two_studies_submitted_as_ray_jobs_share_the_cluster(cluster, synthetic_dataset, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(cluster["state"]["dashboard"], headers={"Authorization": f"Bearer {cluster['token']}"})
    from mlflow import MlflowClient

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"  # one MLflow store, one experiment per study
    # The store exists before the tenants arrive (on a cluster it is the tracking server): two
    # drivers creating a fresh SQLite file's tables at the same moment would race each other.
    MlflowClient(tracking_uri=tracking).search_experiments()
    # Every tuning trial waits at its first epoch until both drivers are tuning and have asked Ray
    # for their slots: whichever study got the slots first then holds them, the other one's trials
    # are queued behind them, and what follows shows how freed slots are shared. (Without the gate
    # a driver that starts slowly on a busy machine can find the other study already finished.)
    gate = tmp_path / "gate"
    held = [{"point": "epoch_start", "phase": "tune", "action": "wait", "path": str(gate), "seconds": 300}]
    jobs = {}
    for name in ("tenant-a", "tenant-b"):
        # Four tuning trials each, two at a time: each study alone could fill the workers.
        options = study_options(synthetic_dataset, tracking, name, ["search.trials_per_hypothesis=2"])
        args = ["study", "run", "--out", str(tmp_path / name)] + set_args(options)
        entrypoint = " ".join(shlex.quote(part) for part in [sys.executable, "-m", "study.cli", *args])
        jobs[name] = client.submit_job(entrypoint=entrypoint, submission_id=f"{name}-{uuid.uuid4().hex[:8]}",
                                       runtime_env={"working_dir": str(REPO), "env_vars": {"MASKVAE_FAULTS": json.dumps(held)}})
    try:
        tuning_since = _wait_tuning(tracking, jobs, client, timeout=300)
        time.sleep(10)  # each driver's Tune asks for its trials' slots within seconds of starting
        gate.touch()
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and not all(client.get_job_status(j).is_terminal() for j in jobs.values()):
            time.sleep(2)
        for name, job in jobs.items():
            (tmp_path / f"{name}.log").write_text(client.get_job_logs(job))
            assert client.get_job_status(job) == JobStatus.SUCCEEDED, f"{name}:\n{client.get_job_logs(job)[-4000:]}"
    finally:
        gate.touch()
        for job in jobs.values():
            if not client.get_job_status(job).is_terminal():
                client.stop_job(job)

    trial_ids, windows, tuning = {}, {}, {}
    for name in jobs:
        out = tmp_path / name
        trials = pd.read_parquet(out / "results" / "trials.parquet")
        assert set(trials["hypothesis"]) == HYPOTHESES and len(trials) == 4 and (trials["status"] == "TERMINATED").all()
        trial_ids[name] = set(trials["trial_id"])
        stored = {path.name.rsplit("-", 1)[-1] for path in (out / "ray" / "tune").glob("*/") if path.is_dir()}
        assert stored == trial_ids[name], "the study's storage prefix holds its own trials and no others"
        _, runs = _runs(tracking, name)
        assert runs and all(run.info.status == "FINISHED" for run in runs)
        tagged = {_tag(r, "maskvae.trial_id") for r in runs if _tag(r, "maskvae.phase") == "tune"}
        assert tagged == trial_ids[name], "the study's MLflow experiment holds its own trials and no others"
        windows[name] = _busy_windows(runs)
        tuning[name] = _busy_windows(runs, phases=("tune",))
    assert not trial_ids["tenant-a"] & trial_ids["tenant-b"]
    # Neither study waits for the other's whole tuning phase: once both are queued, each one's first
    # trial starts before the other's last tuning trial ends (the cluster has two worker slots or
    # more; with one, Ray may keep handing it to the study whose trial just ended: README).
    starts = {name: min(start for start, _ in spans) for name, spans in tuning.items()}
    ends = {name: max(end for _, end in spans) for name, spans in tuning.items()}
    assert starts["tenant-a"] < ends["tenant-b"] and starts["tenant-b"] < ends["tenant-a"], \
        f"one study waited for the other's whole tuning phase (both tuning since {tuning_since}): {tuning}"
    print(f"\ntwo tenants: trials of both studies ran side by side for "
          f"{_overlap(windows['tenant-a'], windows['tenant-b']):.0f} trial-pair-seconds")
