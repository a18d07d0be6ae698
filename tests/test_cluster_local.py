"""The local three-node cluster, as a newcomer runs it: `cluster/local/run-smoke.sh`.

One module-scoped run: a head and two worker raylets with token auth, PostgreSQL, the MLflow
server with basic-auth, and a tiny smoke study submitted as a Ray job. The tests then read what
it left (results, MLflow run tree in PostgreSQL, report) and knock on the locked doors. Skipped,
with the reason, only where PostgreSQL is not installed or cannot start on this machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.helpers.localcluster import load_localcluster, postgres_unavailable

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HYPOTHESES = {"l2/mask", "l2/nomask"}
STUDY_NAME = "cluster-smoke"
SMOKE_OPTIONS = [
    f"name={STUDY_NAME}", "grid.losses=[l2]", "search.trials_per_hypothesis=2", "train.epochs=1",
    "train.max_train_batches=3", "train.max_val_batches=2", "final.seeds=1", "final.grid_faces=4",
    "data.synthesize_if_missing.count=240",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    localcluster = load_localcluster()
    reason = postgres_unavailable(localcluster)
    if reason:
        pytest.skip(f"{reason} (CI installs it: apt-get install -y postgresql)")
    root = tmp_path_factory.mktemp("cluster")
    state_dir, out, data = root / "state", root / "study", root / "data" / "synthetic-32"
    command = ["bash", str(REPO / "cluster" / "local" / "run-smoke.sh"), "--keep", "--state", str(state_dir),
               "--out", str(out), "--"]
    for option in SMOKE_OPTIONS + [f"data.path={data}"]:
        command += ["--set", option]
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                                text=True, timeout=420)
        (root / "run-smoke.log").write_text(result.stdout + result.stderr)
        state = json.loads((state_dir / "cluster.json").read_text()) if (state_dir / "cluster.json").exists() else None
        assert result.returncode == 0, f"run-smoke.sh failed ({result.returncode}):\n{(result.stdout + result.stderr)[-6000:]}"
        yield {"state": state, "state_dir": state_dir, "out": out, "seconds": time.monotonic() - started,
               "log": result.stdout + result.stderr, "localcluster": localcluster}
    finally:
        localcluster.down(state_dir, quiet=True)


def _token(cluster) -> str:
    return Path(cluster["state"]["token_path"]).read_text().strip()


def _alive_nodes(cluster) -> list[dict]:
    return cluster["localcluster"].alive_nodes(cluster["state"]["dashboard"], _token(cluster))


@contextlib.contextmanager
def study_user(cluster):
    """MLflow's client reads basic-auth credentials from the environment at each request."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = "maskvae"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = cluster["state"]["secrets"]["study_password"]
    try:
        from mlflow import MlflowClient

        yield MlflowClient(tracking_uri=cluster["state"]["mlflow"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def runs(cluster):
    with study_user(cluster) as client:
        experiment = client.get_experiment_by_name(STUDY_NAME)
        assert experiment is not None, "the study's experiment is on the MLflow server"
        return client.search_runs([experiment.experiment_id], max_results=500)


def test_the_smoke_job_completed_on_three_nodes(cluster):
    log = cluster["log"]
    assert "Job 'maskvae-smoke-" in log and "succeeded" in log
    nodes = _alive_nodes(cluster)
    assert len(nodes) == 3 and len({n["node_id"] for n in nodes}) == 3
    print(f"\nlocal cluster: up + smoke job in {cluster['seconds']:.0f} s")


def test_trials_ran_on_more_than_one_worker_node(cluster):
    trials = pd.read_parquet(cluster["out"] / "results" / "trials.parquet")
    assert set(trials["hypothesis"]) == HYPOTHESES and len(trials) == 4
    assert (trials["status"] == "TERMINATED").all()
    workers = {n["node_id"] for n in _alive_nodes(cluster) if not n["is_head_node"]}
    assert set(trials["node_id"]) <= workers
    assert trials["node_id"].nunique() == 2


def test_mlflow_on_postgres_holds_the_run_tree_with_node_ids(cluster, runs):
    found = runs
    parents = {r.data.tags.get("maskvae.hypothesis"): r for r in found if r.data.tags.get("maskvae.role") == "hypothesis"}
    assert set(parents) == HYPOTHESES
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") in {p.info.run_id for p in parents.values()}]
    trials = pd.read_parquet(cluster["out"] / "results" / "trials.parquet")
    assert len(children) == len(trials) + len(HYPOTHESES), "one nested run per trial and per final seed"
    assert all(r.info.status == "FINISHED" for r in found)
    node_ids = {r.data.tags.get("maskvae.node_id") for r in children}
    assert None not in node_ids and len(node_ids) == 2
    assert {r.info.run_name for r in found} >= {"report"}
    with study_user(cluster) as client:
        assert client.get_model_version_by_alias(STUDY_NAME, "champion").version
    # The server's store really is the PostgreSQL database of this cluster.
    import psycopg

    state = cluster["state"]
    with psycopg.connect(host="127.0.0.1", port=state["ports"]["postgres"], user="mlflow", dbname="mlflow",
                         password=state["secrets"]["db_password"]) as connection:
        count = connection.execute("SELECT count(*) FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
                                   "WHERE e.name = %s", (STUDY_NAME,)).fetchone()[0]
    assert count == len(found)


def test_the_report_is_produced_and_logged(cluster, runs):
    report = (cluster["out"] / "REPORT.md").read_text()
    assert all(h in report for h in HYPOTHESES)
    report_run = next(r for r in runs if r.info.run_name == "report")
    with study_user(cluster) as client:
        names = {a.path for a in client.list_artifacts(report_run.info.run_id)}
    assert "REPORT.md" in names, "artifacts go through the MLflow server to its artifact store"


def _get(cluster, path: str, token: str | None = None, method: str = "GET", json_body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = requests.request(method, cluster["state"]["dashboard"] + path, headers=headers, json=json_body, timeout=10)
    return reply.status_code, reply.content


def test_dashboard_and_job_api_refuse_callers_without_the_token(cluster):
    token = _token(cluster)
    assert _get(cluster, "/api/jobs/")[0] == 401
    assert _get(cluster, "/api/jobs/", "not-the-token")[0] == 403
    assert _get(cluster, "/api/v0/nodes")[0] == 401
    status, body = _get(cluster, "/api/jobs/", token)
    assert status == 200
    before = {job["submission_id"] for job in json.loads(body)}
    sneaky = {"entrypoint": "touch /tmp/maskvae-should-not-exist", "submission_id": "unauthenticated"}
    assert _get(cluster, "/api/jobs/", method="POST", json_body=sneaky)[0] == 401
    assert _get(cluster, "/api/jobs/", "not-the-token", method="POST", json_body=sneaky)[0] == 403
    after = {job["submission_id"] for job in json.loads(_get(cluster, "/api/jobs/", token)[1])}
    assert after == before and any(s.startswith("maskvae-smoke-") for s in after)


def test_ray_job_cli_needs_the_token_and_succeeds_with_it(cluster):
    state = cluster["state"]
    bin_dir = Path(sys.executable).parent
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base.update(RAY_API_SERVER_ADDRESS=state["dashboard"], RAY_AUTH_MODE="token")
    wrong = subprocess.run([str(bin_dir / "ray"), "job", "submit", "--", "true"], capture_output=True, text=True,
                           env={**base, "RAY_AUTH_TOKEN": "not-the-token"}, timeout=120)
    assert wrong.returncode != 0 and "Forbidden: Invalid authentication token" in wrong.stdout + wrong.stderr
    right = subprocess.run([str(bin_dir / "ray"), "job", "submit", "--submission-id", "authenticated-echo", "--",
                            "echo", "authenticated-ok"], capture_output=True, text=True,
                           env={**base, "RAY_AUTH_TOKEN_PATH": state["token_path"]}, timeout=120)
    assert right.returncode == 0, right.stdout + right.stderr
    assert "authenticated-ok" in right.stdout


def test_study_run_address_connects_to_the_cluster_only_with_the_token(cluster):
    """`maskvae study run --address` goes through start_ray: it joins this cluster (3 nodes), and
    Ray's GCS refuses a driver holding the wrong token."""
    state = cluster["state"]
    probe = ("import ray; from study.orchestration.cluster import start_ray; from study.config.study import RayConfig; "
             f"start_ray(RayConfig(address={state['gcs_address']!r})); "
             "print('nodes', len([n for n in ray.nodes() if n['Alive']]))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base["RAY_AUTH_MODE"] = "token"
    right = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**base, "RAY_AUTH_TOKEN_PATH": state["token_path"]})
    assert "nodes 3" in right.stdout, right.stderr[-2000:]
    # With the wrong token the driver keeps retrying for ~20 s; the GCS's refusal is what matters.
    wrong = subprocess.Popen([sys.executable, "-c", probe], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env={**base, "RAY_AUTH_TOKEN": "not-the-token"})
    seen = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = wrong.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "InvalidAuthToken" in line or line.startswith("nodes"):
                break
    finally:
        wrong.kill()
        wrong.wait()
    assert any("Unauthenticated" in line and "InvalidAuthToken" in line for line in seen), "".join(seen)[-2000:]
    assert not any(line.startswith("nodes") for line in seen)


def test_mlflow_refuses_anonymous_and_wrong_password_writes(cluster):
    base = cluster["state"]["mlflow"]
    create = f"{base}/api/2.0/mlflow/experiments/create"
    assert requests.post(create, json={"name": "anonymous-write"}, timeout=10).status_code == 401
    assert requests.post(create, json={"name": "anonymous-write"}, auth=("maskvae", "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{base}/api/2.0/mlflow/experiments/search?max_results=5", timeout=10).status_code == 401
    study_auth = ("maskvae", cluster["state"]["secrets"]["study_password"])
    lookup = requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "anonymous-write"},
                          auth=study_auth, timeout=10)
    assert lookup.status_code == 404, "the refused writes created nothing"
    assert requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": STUDY_NAME},
                        auth=study_auth, timeout=10).status_code == 200


def test_a_lost_worker_node_reschedules_its_trials_and_the_study_completes(cluster, synthetic_dataset, tmp_path):
    """Reliability case 10: a worker node is stopped mid-study (its `ray start` process ended, like
    `ray stop` on that node); its trials resume on the remaining node and the study completes."""
    from tests.studyproc import StudyProcess, set_args

    state, localcluster = cluster["state"], cluster["localcluster"]
    env = {key: value for key, value in localcluster.client_env(state).items() if key != "PATH"}
    out = tmp_path / "node-loss"
    options = [f"data.path={synthetic_dataset}", "data.synthesize_if_missing=null", "grid.losses=[l2]",
               "search.trials_per_hypothesis=2", "train.epochs=4", "train.max_train_batches=3", "train.max_val_batches=1",
               "final.seeds=1", "final.grid_faces=4", "resources.max_concurrent_trials=2", "resources.max_failures=3",
               f"mlflow.tracking_uri={state['mlflow']}", "name=node-loss", "train.model.width=0.125", "train.model.latent_dim=16"]
    args = ["study", "run", "--address", state["gcs_address"], "--out", str(out)]
    args += set_args(options)
    slow = [{"point": "epoch_start", "phase": "tune", "action": "sleep", "seconds": 2.0}]
    study = StudyProcess(args, cwd=tmp_path, faults=slow, env=env)

    def nodes_with_trials() -> set[str]:
        found = set()
        for result in (out / "ray" / "tune").glob("*/result.json"):
            for line in result.read_text().splitlines():
                if line.strip():
                    found.add(json.loads(line).get("node_id"))
        return found - {None}

    study.wait_for(lambda: len(nodes_with_trials()) >= 2, timeout=240, what="trials running on both worker nodes")
    lost = state["pids"]["ray-worker-2"]
    localcluster.terminate(localcluster.process_tree([lost], []), grace=20)
    cluster["lost"] = {lost}
    assert study.wait(420) == 0, study.output[-4000:]
    trials = pd.read_parquet(out / "results" / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "TERMINATED").all(), trials
    survivors = {n["node_id"] for n in _alive_nodes(cluster) if not n["is_head_node"]}
    assert len(survivors) == 1
    assert set(trials["node_id"]) <= survivors, "every trial finished on the node that is still alive"
    assert (out / "REPORT.md").exists()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_down_stops_exactly_what_up_started(cluster):
    """Last in this module: tears the cluster down and checks nothing of it is left."""
    localcluster, state = cluster["localcluster"], cluster["state"]
    pids = list(state["pids"].values())
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # not the cluster's
    try:
        lost = cluster.get("lost", set())
        assert all(localcluster._alive(pid) for pid in pids if pid not in lost)
        localcluster.down(cluster["state_dir"])
        assert not [pid for pid in pids if localcluster._alive(pid)]
        assert not localcluster.process_tree([], [state["ray_temp_root"]]), "no process of this cluster is left"
        for name in ("postgres", "mlflow", "gcs", "dashboard"):
            assert not _port_open(state["ports"][name]), name
        assert not Path(state["ray_temp_root"]).exists() and not Path(state["postgres"]["root"]).exists()
        assert bystander.poll() is None, "a process the cluster did not start is untouched"
    finally:
        bystander.kill()
        bystander.wait()
