"""A cluster without a shared disk: `cluster/local/localcluster.py up --private-mounts`.

Each worker node runs in its own mount namespace with an empty private /tmp (and runs/), like a
machine of its own: it cannot see the driver's study directory or a dataset kept there. The driver
joins by address, with PostgreSQL and the MLflow server of the local cluster.

1. The workers really are blind to the driver's files (read through /proc/<pid>/root).
2. Preflight refuses a local `data.path` and storage path, naming both fields, before any run.
3. The study passes with the dataset and Ray's storage on S3 (moto's server on loopback); each
   worker stages the dataset into its own private cache.

Needs root and mount namespaces (`unshare --mount`); skipped with the reason where they are
missing (CI runs as root and has them).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.localcluster import load_localcluster, postgres_unavailable
from tests.studyproc import StudyProcess, set_args

pytestmark = pytest.mark.slow

HYPOTHESES = {"l2/mask", "l2/nomask"}
STUDY_OPTIONS = [
    "grid.losses=[l2]", "grid.masks=[true, false]", "search.trials_per_hypothesis=1", "train.epochs=1",
    "train.max_train_batches=3", "train.max_val_batches=1", "final.seeds=1", "final.grid_faces=4",
    "scheduler.kind=fifo", "train.model.width=0.125", "train.model.latent_dim=16", "train.device=cpu",
    "data.synthesize_if_missing=null",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    localcluster = load_localcluster()
    reason = postgres_unavailable(localcluster) or localcluster.private_mounts_problem(localcluster.hidden_paths())
    if reason:
        pytest.skip(f"{reason} (CI runs as root, with postgresql installed)")
    root = tmp_path_factory.mktemp("private")
    state_dir = root / "state"
    with pytest.MonkeyPatch.context() as env:
        # The workers inherit `up`'s environment: the store's endpoint and credentials, and a data
        # cache under /tmp, which each worker sees as its own empty tmpfs.
        for key, value in {**s3_server.env(), "MASKVAE_DATA_CACHE": str(root / "cache")}.items():
            env.setenv(key, value)
        state = localcluster.up(state_dir, workers=2, cpus_per_worker=1, private_mounts=True)
        try:
            client = {key: value for key, value in localcluster.client_env(state).items() if key != "PATH"}
            yield {"state": state, "root": root, "env": client, "localcluster": localcluster}
        finally:
            localcluster.down(state_dir, quiet=True)


def _worker_pids(cluster) -> list[int]:
    return [pid for name, pid in cluster["state"]["pids"].items() if name.startswith("ray-worker-")]


def _seen_by(pid: int, path: Path) -> Path:
    """`path` as the process sees it, in its own mount namespace."""
    return Path(f"/proc/{pid}/root{path}")


def test_workers_cannot_see_the_drivers_files(cluster, tmp_path):
    mine = tmp_path / "driver-only.txt"
    mine.write_text("only the driver's machine has this")
    pids = _worker_pids(cluster)
    assert len(pids) == 2
    for pid in pids:
        assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"), "a mount namespace of its own"
        assert _seen_by(pid, Path(__file__)).exists(), "the checkout stays visible (the workers run its code)"
        assert not _seen_by(pid, mine).exists() and not _seen_by(pid, tmp_path).exists()
        assert not _seen_by(pid, cluster["root"] / "state").exists(), "nor the cluster's own state under /tmp"


def test_preflight_refuses_local_paths_naming_each_field(cluster, synthetic_dataset, tmp_path):
    out = tmp_path / "study"
    options = STUDY_OPTIONS + [f"data.path={synthetic_dataset}", "name=private-local"]
    study = StudyProcess(["study", "run", "--address", cluster["state"]["gcs_address"], "--out", str(out),
                          *set_args(options)], cwd=tmp_path, env=cluster["env"])
    assert study.wait(240) == 2, study.output[-3000:]
    problems = [line for line in study.output.splitlines() if "cannot see as this machine does" in line]
    assert [line.strip().split(":")[0] for line in problems] == ["- data.path", "- ray.storage_path"], study.output[-3000:]
    assert "2 of the 2 trial nodes" in problems[0]
    print("\n" + "\n".join(problems))
    assert not out.exists(), "nothing half-made is left"


def test_a_study_on_object_storage_passes_without_a_shared_disk(cluster, s3_server, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from study.cli import main
    from tests.helpers.s3 import Bucket

    bucket = Bucket(s3_server, s3_server.make_bucket())
    data, storage = bucket.uri("data/faces"), bucket.uri("studies/private")
    for key, value in {**s3_server.env(), **cluster["env"]}.items():  # the dataset and MLflow are read here too
        monkeypatch.setenv(key, value)
    assert main(["data", "synth", data, "--count", "160", "--size", "32", "--no-progress"]) == 0
    out = tmp_path / "study"
    options = STUDY_OPTIONS + [f"data.path={data}", f"ray.storage_path={storage}", "name=private-s3"]
    study = StudyProcess(["study", "run", "--address", cluster["state"]["gcs_address"], "--out", str(out),
                          *set_args(options)], cwd=tmp_path, env={**cluster["env"], **s3_server.env()})
    assert study.wait(420) == 0, study.output[-4000:]
    assert json.loads((out / "study.json").read_text())["phase"] == "done"

    trials = pd.read_parquet(out / "results" / "trials.parquet")
    assert set(trials["hypothesis"]) == HYPOTHESES and (trials["status"] == "TERMINATED").all()
    token = Path(cluster["state"]["token_path"]).read_text().strip()
    workers = {node["node_id"] for node in cluster["localcluster"].alive_nodes(cluster["state"]["dashboard"], token)
               if not node["is_head_node"]}
    assert set(trials["node_id"]) <= workers and len(workers) == 2, "every trial ran on a private-mount worker"
    assert (out / "REPORT.md").exists() and (out / "models" / "l2-mask" / "model.pt").exists()
    assert any(key.startswith("studies/private/tune/") for key in bucket.keys("studies/private"))

    # Every worker that trained staged the dataset into its own cache, invisible to this machine.
    cache = cluster["root"] / "cache"
    staged = [pid for pid in _worker_pids(cluster)
              if _seen_by(pid, cache).is_dir() and any(_seen_by(pid, cache).rglob("*.arrow"))]
    assert staged, "a worker staged the dataset from the bucket"

    client = MlflowClient(tracking_uri=cluster["state"]["mlflow"])
    experiment = client.get_experiment_by_name("private-s3")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert runs and all(run.info.status == "FINISHED" for run in runs)
    for run in runs:
        if run.data.tags.get("maskvae.phase") == "tune":
            assert "samples.png" in [a.path for a in client.list_artifacts(run.info.run_id)], run.info.run_name
