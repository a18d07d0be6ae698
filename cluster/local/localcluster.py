#!/usr/bin/env python3
"""A real multi-node Ray cluster on one machine, locked like the cloud ones.

    python cluster/local/localcluster.py up   [--state DIR] [--workers 2] [--private-mounts]
    python cluster/local/localcluster.py env  [--state DIR]      # client settings, to `source`
    python cluster/local/localcluster.py down [--state DIR]

`up` starts, all on 127.0.0.1 and on ports nobody else holds:
  - PostgreSQL (Debian's `postgresql` package): a private database cluster in a fresh temp dir,
    password auth only;
  - the MLflow tracking server on it (`mlflow server --app-name basic-auth`), with a generated
    admin password and a `maskvae` user for studies (no password is shipped anywhere);
  - a Ray head with no CPUs (it runs the job driver only) and N worker nodes with one CPU each.
    Each node is its own `ray start` (own raylet, ports and temp dir), so trials really spread
    over nodes. `RAY_AUTH_MODE=token` on every node with a token generated for this cluster.
    With `--private-mounts` (root, Linux) each worker node runs in its own mount namespace with
    an empty private `/tmp` and `runs/`: like a machine of its own, it cannot see the driver's study
    directory or a dataset there, so a study needs object storage (`s3://...`). Workers inherit
    `up`'s environment: export the store's endpoint and credentials before `up`.

`down` stops exactly the processes `up` started, found by the PIDs it recorded and their
descendants (never a bare `ray stop`, which would kill every Ray instance on the machine).
Standard library only; run it with the Python whose environment has ray and mlflow.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE = REPO / "runs" / "local-cluster"
STATE_FILE = "cluster.json"
ENV_FILE = "env.sh"
STUDY_USER = "maskvae"
ADMIN_USER = "admin"
BIN = Path(sys.executable).parent  # ray, mlflow and maskvae live beside this interpreter


class ClusterError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[local-cluster] {message}", flush=True)


# ------------------------------------------------------------------------------------------
# Small helpers

def free_ports(count: int) -> list[int]:
    """Ports the OS calls free right now; all held open together so they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def http(method: str, url: str, *, token: str | None = None, basic: tuple[str, str] | None = None,
         body: dict | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(what: str, check, timeout: float, proc: subprocess.Popen | None = None, log_file: Path | None = None):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ClusterError(f"{what}: process exited with status {proc.returncode}{_tail(log_file)}")
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError) as error:
            last_error = error
        time.sleep(0.5)
    raise ClusterError(f"{what}: not ready after {timeout:.0f} s ({last_error or 'no answer'}){_tail(log_file)}")


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {path} ---\n" + "\n".join(text)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_tree(roots: list[int], markers: list[str]) -> set[int]:
    """`roots` and all their descendants, plus any process whose command line names one of
    `markers` (this cluster's unique temp directories) and its descendants."""
    children = _children_map()
    seeds = {pid for pid in roots if Path(f"/proc/{pid}").exists()}
    if markers:
        for pids in children.values():
            for pid in pids:
                line = _cmdline(pid)
                if any(marker in line for marker in markers):
                    seeds.add(pid)
    found, stack = set(), list(seeds)
    while stack:
        pid = stack.pop()
        if pid in found or pid == os.getpid():
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent's wait is missing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def terminate(pids: set[int], grace: float = 15.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ------------------------------------------------------------------------------------------
# PostgreSQL

def postgres_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    raise ClusterError("PostgreSQL not found (no pg_ctl on PATH or in /usr/lib/postgresql/*/bin). "
                       "Install Debian's package: apt-get update && apt-get install -y postgresql")


def postgres_user() -> tuple[int, int, str] | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid, name
        except KeyError:
            continue
    raise ClusterError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _as_pg_user(user: tuple[int, int, str] | None) -> dict:
    if user is None:
        return {}
    return {"user": user[0], "group": user[1], "extra_groups": []}


def start_postgres(root: Path, port: int, admin_password: str) -> tuple[Path, tuple | None]:
    """initdb + pg_ctl start in `root` (owned by the database user; its log is copied out at stop)."""
    bindir, user = postgres_bin(), postgres_user()
    data = root / "data"
    root.mkdir(parents=True, exist_ok=True)
    if user is not None:
        os.chown(root, user[0], user[1])
    pwfile = root / "pwfile"
    write_private(pwfile, admin_password + "\n")
    if user is not None:
        os.chown(pwfile, user[0], user[1])
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "pgadmin", f"--pwfile={pwfile}",
                    "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], check=True, env=env, cwd=root,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **_as_pg_user(user))
    pwfile.unlink()
    # A throwaway database for one machine: durability settings off make MLflow's schema
    # migrations take seconds instead of a minute. No unix socket: TCP on 127.0.0.1 only.
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    result = subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "60",
                             "-o", options, "start"], env=env, cwd=root, capture_output=True, text=True,
                            **_as_pg_user(user))
    if result.returncode != 0:
        raise ClusterError(f"PostgreSQL did not start: {result.stderr.strip()}{_tail(root / 'postgres.log')}")
    return bindir, user


def psql(bindir: Path, port: int, password: str, sql: str) -> None:
    env = {**os.environ, "PGPASSWORD": password}
    result = subprocess.run([str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "pgadmin", "-d", "postgres",
                             "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"psql failed: {result.stderr.strip()}")


def stop_postgres(state: dict) -> None:
    pg = state.get("postgres")
    if not pg or not Path(pg["root"]).exists():
        return
    data = Path(pg["root"]) / "data"
    if (data / "postmaster.pid").exists():
        user = tuple(pg["user"]) if pg.get("user") else None
        subprocess.run([str(Path(pg["bin"]) / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"],
                       capture_output=True, cwd=pg["root"], **_as_pg_user(user))
        pid_file = data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: end that postmaster (and only it) by PID
            pid = int(pid_file.read_text().split()[0])
            terminate(process_tree([pid], []), grace=5)
    logs = Path(state.get("state_dir", pg["root"])) / "logs"
    if (Path(pg["root"]) / "postgres.log").exists() and logs.is_dir():
        shutil.copyfile(Path(pg["root"]) / "postgres.log", logs / "postgres.log")
    shutil.rmtree(pg["root"], ignore_errors=True)


# ------------------------------------------------------------------------------------------
# MLflow

def start_mlflow(state_dir: Path, port: int, pg_port: int, db_password: str, admin_password: str,
                 log_file: Path) -> subprocess.Popen:
    mlflow_dir = state_dir / "mlflow"
    (mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    # The auth store lives in PostgreSQL too; the password reaches psycopg through PGPASSWORD,
    # so no file or command line holds it.
    write_private(mlflow_dir / "basic_auth.ini", "\n".join([
        "[mlflow]",
        "default_permission = READ",
        f"database_uri = postgresql+psycopg://mlflow@127.0.0.1:{pg_port}/mlflow_auth",
        f"admin_username = {ADMIN_USER}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        # Each request re-hashes the password (PBKDF2, ~0.4 s on two cores); a study makes
        # thousands. Cached checks trade up to a minute of staleness after a password change.
        "auth_cache_ttl_seconds = 60",
        "",
    ]))
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://mlflow@127.0.0.1:{pg_port}/mlflow",
        "PGPASSWORD": db_password,
        "MLFLOW_AUTH_CONFIG_PATH": str(mlflow_dir / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USER,
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        # Signs the UI's CSRF tokens; must be stable for the server's lifetime.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    command = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--artifacts-destination", str(mlflow_dir / "artifacts")]
    log(" ".join(command))
    with open(log_file, "ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=mlflow_dir)


# ------------------------------------------------------------------------------------------
# Ray

def ray_env(state_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(state_dir / "ray" / "auth_token"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
           # Custom metrics reach each node's Prometheus endpoint within seconds, not the default 10 s.
           "RAY_metrics_report_interval_ms": "2000"}
    env.pop("RAY_AUTH_TOKEN", None)  # a token in the caller's environment would win over this cluster's
    env.pop("RAY_ADDRESS", None)
    env.update(extra or {})
    return env


def hidden_paths() -> list[Path]:
    """What a worker with private mounts cannot see: where studies, datasets and scratch live."""
    return [Path("/tmp"), *([REPO / "runs"] if (REPO / "runs").is_dir() else [])]


def private_mounts_problem(hidden: list[Path]) -> str | None:
    """Why worker nodes cannot get private mounts here, or None."""
    for needed, what in ((REPO, "this checkout"), (Path(sys.prefix), "this Python environment")):
        for path in hidden:
            if needed == path or path in needed.parents:
                return f"--private-mounts hides {path} from the workers, but {what} ({needed}) is there"
    if shutil.which("unshare") is None:
        return "--private-mounts needs util-linux's `unshare`"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "mount", "-t", "tmpfs", "probe",
                            "/tmp"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"--private-mounts needs root and mount namespaces: unshare --mount failed: {probe.stderr.strip()}"
    return None


def private_mounts_prefix(hidden: list[Path]) -> list[str]:
    """Run a command in a mount namespace of its own with an empty tmpfs over each hidden path.
    `unshare` and `sh` exec into the command, so it keeps the PID `down` stops."""
    mounts = " && ".join(f"mount -t tmpfs -o mode=1777 maskvae-private {shlex.quote(str(path))}" for path in hidden)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", f'{mounts} && exec "$@"', "private-node"]


def start_node(name: str, args: list[str], env: dict[str, str], log_file: Path,
               prefix: list[str] | None = None) -> subprocess.Popen:
    # --block keeps `ray start` in the foreground as the node's owner: SIGTERM to it stops that
    # node's raylet, GCS, dashboard and workers, and nothing else.
    command = [*(prefix or []), str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args]
    log(f"{name}: {' '.join(command)}")
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(f"ray node {name}", lambda: "Ray runtime started" in log_file.read_text(errors="replace"), 120,
             proc=proc, log_file=log_file)
    return proc


def node_ports(prefix: str, ports: dict[str, int]) -> list[str]:
    names = ["node-manager-port", "object-manager-port", "dashboard-agent-grpc-port", "dashboard-agent-listen-port",
             "metrics-export-port", "runtime-env-agent-port"]
    picked = free_ports(len(names))
    for name, port in zip(names, picked):
        ports[f"{prefix}.{name}"] = port
    return [f"--{name}={port}" for name, port in zip(names, picked)]


def alive_nodes(dashboard: str, token: str) -> list[dict]:
    status, body = http("GET", f"{dashboard}/api/v0/nodes?limit=100&detail=false", token=token)
    if status != 200:
        raise ValueError(f"dashboard answered {status}")
    rows = json.loads(body)["data"]["result"]["result"]
    return [row for row in rows if row.get("state") == "ALIVE"]


# ------------------------------------------------------------------------------------------
# Commands

def load_state(state_dir: Path) -> dict | None:
    path = state_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def save_state(state_dir: Path, state: dict) -> None:
    write_private(state_dir / STATE_FILE, json.dumps(state, indent=2))


def ray_client_env(state: dict) -> dict[str, str]:
    """What a Ray client of this cluster sets: its addresses and token."""
    return {
        "RAY_API_SERVER_ADDRESS": state["dashboard"],
        "MASKVAE_RAY_GCS_ADDRESS": state["gcs_address"],
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": state["token_path"],
    }


def client_env(state: dict) -> dict[str, str]:
    return {
        **ray_client_env(state),
        "MLFLOW_TRACKING_URI": state["mlflow"],
        "MLFLOW_TRACKING_USERNAME": STUDY_USER,
        "MLFLOW_TRACKING_PASSWORD": state["secrets"]["study_password"],
        "PATH": f"{BIN}:$PATH",
    }


def claim_state_dir(state_dir: Path, script: str) -> None:
    """Ready `state_dir` for a new cluster: refuse it while its cluster still runs, stop what is left
    of a stopped one and remove what its `up` wrote, and refuse a folder that holds anything else."""
    existing = load_state(state_dir)
    if existing and any(_alive(pid) for pid in existing.get("pids", {}).values()):
        raise ClusterError(f"a local cluster from {state_dir} is still running: "
                           f"python cluster/local/{script} down --state {state_dir}")
    if existing:
        down(state_dir, quiet=True)
    elif state_dir.exists() and any(state_dir.iterdir()):
        raise ClusterError(f"{state_dir} is not empty and holds no {STATE_FILE}: give a new or empty --state directory")
    for entry in (STATE_FILE, ENV_FILE, "logs", "mlflow", "ray"):  # only what an earlier `up` wrote
        target = state_dir / entry
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    (state_dir / "logs").mkdir(parents=True)
    os.chmod(state_dir, 0o700)


def _start_tracking(state_dir: Path, state: dict, pg_root: Path, logs: Path, started: float) -> subprocess.Popen:
    """PostgreSQL with MLflow's two databases, then the MLflow server on it; each recorded in `state`."""
    secret_values = state["secrets"]
    pg_port, mlflow_port = state["ports"]["postgres"], state["ports"]["mlflow"]
    user = postgres_user()
    # Recorded before anything runs, so a failed start is cleaned up too.
    state["postgres"] = {"root": str(pg_root), "bin": str(postgres_bin()), "user": list(user) if user else None,
                         "port": pg_port}
    save_state(state_dir, state)
    bindir, _ = start_postgres(pg_root, pg_port, secret_values["pg_admin_password"])
    psql(bindir, pg_port, secret_values["pg_admin_password"],
         f"CREATE ROLE mlflow LOGIN PASSWORD '{secret_values['db_password']}'; ")
    for database in ("mlflow", "mlflow_auth"):
        psql(bindir, pg_port, secret_values["pg_admin_password"], f"CREATE DATABASE {database} OWNER mlflow")
    log(f"PostgreSQL on 127.0.0.1:{pg_port} ({time.monotonic() - started:.1f} s)")

    mlflow_proc = start_mlflow(state_dir, mlflow_port, pg_port, secret_values["db_password"],
                               secret_values["admin_password"], logs / "mlflow.log")
    state["pids"]["mlflow"] = mlflow_proc.pid
    save_state(state_dir, state)
    return mlflow_proc


def _start_ray_nodes(state_dir: Path, state: dict, ray_root: Path, token: str, hidden: list[Path], cpus_per_worker: int,
                     logs: Path) -> None:
    """The Ray head (no CPUs: trials run on the workers), then the workers; each recorded in `state`."""
    secret_values = state["secrets"]
    gcs_port, dashboard_port, client_port = (state["ports"][name] for name in ("gcs", "dashboard", "ray_client"))
    head_env = ray_env(state_dir, {"MLFLOW_TRACKING_USERNAME": STUDY_USER,
                                   "MLFLOW_TRACKING_PASSWORD": secret_values["study_password"]})
    head = start_node("head", [
        "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={client_port}", "--include-dashboard=true",
        "--num-cpus=0", "--num-gpus=0", "--object-store-memory=100000000",
        f"--temp-dir={ray_root / 'head'}", *node_ports("head", state["ports"]),
    ], head_env, logs / "ray-head.log")
    state["pids"]["ray-head"] = head.pid
    save_state(state_dir, state)
    worker_env = ray_env(state_dir)
    if hidden:  # the token file may sit under a hidden path: the workers get the token itself
        worker_env.pop("RAY_AUTH_TOKEN_PATH")
        worker_env["RAY_AUTH_TOKEN"] = token
    for index in range(1, state["workers"] + 1):
        name = f"worker-{index}"
        proc = start_node(name, [
            f"--address=127.0.0.1:{gcs_port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_worker}",
            "--num-gpus=0", "--object-store-memory=100000000", f"--temp-dir={ray_root / name}",
            *node_ports(name, state["ports"]),
        ], worker_env, logs / f"ray-{name}.log", prefix=private_mounts_prefix(hidden) if hidden else None)
        state["pids"][f"ray-{name}"] = proc.pid
        save_state(state_dir, state)


def up(state_dir: Path, workers: int, cpus_per_worker: int, private_mounts: bool = False) -> dict:
    state_dir = state_dir.resolve()
    hidden = hidden_paths() if private_mounts else []
    problem = private_mounts_problem(hidden) if private_mounts else None
    if problem:
        raise ClusterError(problem)
    claim_state_dir(state_dir, "localcluster.py")

    # Unix socket paths are capped at ~107 bytes: keep Ray's temp dirs short, in /tmp.
    ray_root = Path(tempfile.mkdtemp(prefix="mvray-", dir="/tmp"))
    pg_root = Path(tempfile.mkdtemp(prefix="mvpg-", dir="/tmp"))
    token = secrets.token_hex(32)
    write_private(state_dir / "ray" / "auth_token", token)
    secret_values = {name: secrets.token_hex(16) for name in ("pg_admin_password", "db_password", "admin_password",
                                                               "study_password")}
    pg_port, mlflow_port, gcs_port, dashboard_port, client_port = free_ports(5)
    state = {
        "state_dir": str(state_dir), "ray_temp_root": str(ray_root), "token_path": str(state_dir / "ray" / "auth_token"),
        "gcs_address": f"127.0.0.1:{gcs_port}", "dashboard": f"http://127.0.0.1:{dashboard_port}",
        "mlflow": f"http://127.0.0.1:{mlflow_port}", "ports": {"postgres": pg_port, "mlflow": mlflow_port,
        "gcs": gcs_port, "dashboard": dashboard_port, "ray_client": client_port},
        "postgres": None, "pids": {}, "secrets": secret_values, "workers": workers,
        "private_mounts": [str(path) for path in hidden],
    }
    save_state(state_dir, state)
    logs = state_dir / "logs"
    try:
        started = time.monotonic()
        mlflow_proc = _start_tracking(state_dir, state, pg_root, logs, started)
        _start_ray_nodes(state_dir, state, ray_root, token, hidden, cpus_per_worker, logs)

        wait_for("MLflow server", lambda: http("GET", f"{state['mlflow']}/health")[0] == 200, 180, proc=mlflow_proc,
                 log_file=logs / "mlflow.log")
        status, body = http("POST", f"{state['mlflow']}/api/2.0/mlflow/users/create",
                            basic=(ADMIN_USER, secret_values["admin_password"]),
                            body={"username": STUDY_USER, "password": secret_values["study_password"]})
        if status != 200:
            raise ClusterError(f"MLflow: creating user {STUDY_USER!r} failed ({status}): {body[:300]!r}")
        wait_for(f"{workers + 1} alive Ray nodes", lambda: len(alive_nodes(state["dashboard"], token)) == workers + 1,
                 60, log_file=logs / "ray-head.log")
        env_lines = [f"export {key}={value}" if key == "PATH" else f"export {key}='{value}'"
                     for key, value in client_env(state).items()]
        write_private(state_dir / ENV_FILE, "\n".join(env_lines) + "\n")
        log(f"up in {time.monotonic() - started:.0f} s: Ray dashboard {state['dashboard']}, MLflow {state['mlflow']} "
            f"(user {STUDY_USER}), {workers} workers{' with private mounts' if hidden else ''}. Client settings: source {state_dir / ENV_FILE}")
        return state
    except BaseException:
        log("start failed; stopping what was started")
        down(state_dir, quiet=True)
        raise


def down(state_dir: Path, quiet: bool = False) -> None:
    state_dir = state_dir.resolve()
    state = load_state(state_dir)
    if state is None:
        if not quiet:
            log(f"nothing to stop: no {STATE_FILE} in {state_dir}")
        return
    pids = state.get("pids", {})
    markers = [state["ray_temp_root"]] if state.get("ray_temp_root") else []
    # Snapshot the whole tree first (job drivers included): once a raylet is gone its children
    # are re-parented and could not be traced back to this cluster.
    ray_roots = [pid for name, pid in pids.items() if name.startswith("ray-")]
    tree = process_tree(ray_roots, markers)
    # SIGTERM to a `ray start --block` makes it stop its own node's processes; workers go first
    # so the head never sees them die unexpectedly. Whatever is left of the tree is ended after.
    for pid in sorted(ray_roots, key=lambda pid: pid == pids.get("ray-head")):
        terminate({pid}, grace=20)
    terminate({pid for pid in tree if _alive(pid)}, grace=5)
    leftovers = process_tree([], markers)
    if leftovers:
        terminate(leftovers, grace=5)
    if "mlflow" in pids:
        terminate(process_tree([pids["mlflow"]], []), grace=10)
    stop_postgres(state)
    if state.get("ray_temp_root"):
        shutil.rmtree(state["ray_temp_root"], ignore_errors=True)
    state["pids"] = {}
    save_state(state_dir, state)
    if not quiet:
        log(f"stopped: {len(tree)} Ray processes, MLflow and PostgreSQL of {state_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    parser.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs each worker node offers (default 1)")
    parser.add_argument("--private-mounts", action="store_true",
                        help="run each worker in its own mount namespace, with /tmp and runs/ private (root, Linux)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.state, args.workers, args.cpus_per_worker, args.private_mounts)
        elif args.command == "down":
            down(args.state)
        else:
            state = load_state(args.state.resolve())
            if state is None:
                raise ClusterError(f"no cluster state in {args.state}")
            print((args.state.resolve() / ENV_FILE).read_text(), end="")
    except (ClusterError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None)
        print(f"error: {error}" + (f"\n{detail.decode(errors='replace') if isinstance(detail, bytes) else detail}"
                                   if detail else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
