"""Connecting to (or starting) Ray, and what the cluster offers."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import ray

from study.config.study import RayConfig, StudyConfig
from study.errors import UserInputError
from study.training import faults

DASHBOARD_HOST = "127.0.0.1"
FIRST_DASHBOARD_PORT = 8265
DEFAULT_AGENT_PORT = 52365  # Ray's dashboard agent (ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT)
# How far "auto" looks past 8265: enough for a handful of studies side by side on one machine.
AUTO_PORT_SPAN = 100
# Ray logs a warning about token auth on every local start; maskvae says where the token is instead.
_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


class DashboardPortError(UserInputError):
    def __init__(self, problem: str):
        super().__init__([problem], title="Ray dashboard port unavailable")


@dataclass(frozen=True)
class RayStarted:
    """What the study prints about the Ray it runs on."""

    dashboard_url: str | None = None
    token_hint: str | None = None


def port_is_free(port: int, host: str = DASHBOARD_HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _auto(config: RayConfig) -> bool:
    return config.dashboard_port == "auto"


def dashboard_port(config: RayConfig, *, skip: tuple[int, ...] = ()) -> int | None:
    """The port local Ray's dashboard will use: the configured one, refused when taken, or with
    "auto" the first free one from 8265 on. None when no local dashboard is started."""
    if config.address or not config.dashboard:
        return None
    if not _auto(config):
        port = int(config.dashboard_port)
        if port in skip or not port_is_free(port):
            raise DashboardPortError(f"ray.dashboard_port: {DASHBOARD_HOST}:{port} is in use (another study's Ray "
                                     "dashboard?); pick a free port or 'auto'")
        return port
    for port in range(FIRST_DASHBOARD_PORT, FIRST_DASHBOARD_PORT + AUTO_PORT_SPAN):
        if port not in skip and port_is_free(port):
            return port
    raise DashboardPortError(f"ray.dashboard_port: auto found no free port in {FIRST_DASHBOARD_PORT}-"
                             f"{FIRST_DASHBOARD_PORT + AUTO_PORT_SPAN - 1}; set a free port")


def _job_config(job_name: str | None, metadata: dict[str, str] | None):
    from ray.job_config import JobConfig

    # The dashboard's Jobs table shows the `job_name` metadata key in its Name column.
    values = {**(metadata or {}), **({"job_name": job_name} if job_name else {})}
    return JobConfig(metadata=values) if values else None


def start_ray(config: RayConfig, *, port: int | None = None, job_name: str | None = None,
              metadata: dict[str, str] | None = None, ray_command: str = "ray") -> RayStarted:
    """Connect to `config.address` or start local Ray (dashboard on 127.0.0.1:`port`, see
    `dashboard_port`). A dashboard port taken in the meantime is replaced with "auto" and refused
    otherwise, before Ray has started anything."""
    if ray.is_initialized():
        return RayStarted()
    job_config = _job_config(job_name, metadata)
    if config.address:
        # Workers on other nodes inherit their raylet's environment, not the driver's: forward the
        # fault-injection rules explicitly (unset outside the reliability tests).
        env_vars = {faults.ENV: os.environ[faults.ENV]} if os.environ.get(faults.ENV) else {}
        context = ray.init(address=config.address, log_to_driver=False, job_config=job_config,
                           runtime_env={"env_vars": env_vars} if env_vars else None)
        return RayStarted(_url(context), token_hint(ray_command))
    # Studies starting side by side on one machine would pick the same free port and race for it
    # (Ray checks the port, then its dashboard process binds it seconds later): choosing the port and
    # starting Ray happen under a machine-wide lock, so the second study sees the first's port taken.
    with _port_lock(config.dashboard):
        if config.dashboard and (port is None or not port_is_free(port)):
            port = dashboard_port(config)
        try:
            with _quiet_token_notice(), _agent_port(config.dashboard):
                context = ray.init(num_cpus=config.num_cpus, include_dashboard=config.dashboard,
                                   dashboard_host=DASHBOARD_HOST, dashboard_port=port or FIRST_DASHBOARD_PORT,
                                   log_to_driver=False, configure_logging=False, job_config=job_config)
        except ValueError as error:
            # Ray checks the port before it starts any process: nothing is left to clean up.
            if "Failed to bind" not in str(error):
                raise
            raise DashboardPortError(f"ray.dashboard_port: {DASHBOARD_HOST}:{port} is in use (another study's "
                                     "Ray dashboard?); pick a free port or 'auto'") from None
    return RayStarted(_url(context), token_hint(ray_command))


@contextlib.contextmanager
def _agent_port(dashboard: bool):
    """The node's dashboard agent on a free port. Its default, 52365, is fixed: a second Ray on the
    machine finds it taken, and its dashboard then shows no logs ("Agent ... doesn't exist").
    `ray.init` offers no setting for it (`ray start --dashboard-agent-listen-port` does), so the
    parameters it builds get one; this is the only use of Ray's private `RayParams`."""
    if not dashboard or port_is_free(DEFAULT_AGENT_PORT, ""):
        yield
        return
    from ray._private import parameter

    agent_port = next(port for port in range(DEFAULT_AGENT_PORT + 1, DEFAULT_AGENT_PORT + 200)
                      if port_is_free(port, "") and port_is_free(port))
    original = parameter.RayParams

    class RayParams(original):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("dashboard_agent_listen_port", agent_port)
            super().__init__(*args, **kwargs)

    parameter.RayParams = RayParams
    try:
        yield
    finally:
        parameter.RayParams = original


class _port_lock:
    """An exclusive lock file in the temp directory (released by the OS if this process dies)."""

    def __init__(self, needed: bool):
        self.needed = needed
        self.handle = None

    def __enter__(self):
        if self.needed:
            import fcntl
            import tempfile

            try:
                self.handle = open(os.path.join(tempfile.gettempdir(), "maskvae-ray-dashboard.lock"), "a")
                fcntl.flock(self.handle, fcntl.LOCK_EX)
            except OSError:  # another user's lock file: go on unlocked, as without this lock
                self.handle = None
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()  # closing releases the lock


def _url(context) -> str | None:
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


class _quiet_token_notice:
    """Ray's token-auth warning on local start, silenced for the duration (maskvae prints the hint)."""

    def __enter__(self):
        self.logger = logging.getLogger(_TOKEN_LOGGER)
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def token_hint(ray_command: str = "ray") -> str | None:
    """Where the dashboard's sign-in token is, when Ray runs with token authentication (Ray 2.60
    turns it on for local clusters too): RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        if not is_token_auth_enabled():
            return None
    except Exception:  # a Ray without token auth: nothing to sign in with
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        where = "the RAY_AUTH_TOKEN variable"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        where = os.environ["RAY_AUTH_TOKEN_PATH"]
    else:
        where = "~/.ray/auth_token"
    return f"sign in with the token that `{ray_command} get-auth-token` prints (kept in {where})"


def cluster_nodes() -> list[dict[str, Any]]:
    return ray.nodes()


@ray.remote(num_cpus=0, max_retries=0)
def _file_digests(files: list[str]) -> list[str | None]:
    from pathlib import Path

    from data import storage

    digests: list[str | None] = []
    for name in files:
        try:
            digests.append(storage.Location.of(Path(name).parent).sha256(Path(name).name))
        except OSError:
            digests.append(None)
    return digests


def file_digests_on_nodes(files: list[str], node_ids: list[str], timeout: float = 120.0) -> dict[str, list[str | None] | None]:
    """What each node finds at `files`: each file's SHA-256, None for a file it cannot read, and
    None for the whole node when it did not answer within `timeout`. A zero-CPU task pinned to each
    node, so a busy cluster answers too."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    refs = {node: _file_digests.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(files)
            for node in node_ids}
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    answers: dict[str, list[str | None] | None] = {}
    for node, ref in refs.items():
        try:
            answers[node] = ray.get(ref) if ref in ready else None
        except ray.exceptions.RayError:
            answers[node] = None
    for ref in refs.values():
        if ref not in ready:
            ray.cancel(ref, force=True)
    return answers


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


# --- Sharing a cluster between studies ------------------------------------------------------------
# Each study's driver has its own cap (`default_concurrency`); several drivers on one cluster may
# together ask for more than it holds. The excess waits in Ray's placement queue, which the
# autoscaler reads as demand. What keeps one study from holding every slot is actor reuse being
# off there: Tune keeps a finished trial's actor, and with it the slot, for the study's next
# trial, so a second study would wait for the first one's whole phase.

def joins_existing_cluster(config: RayConfig) -> bool:
    """Whether the driver joins a cluster (by address, or as a Ray job) rather than starting Ray."""
    return bool(config.address or os.environ.get("RAY_ADDRESS"))


def reuse_actors(config: StudyConfig) -> bool:
    if config.resources.reuse_actors is not None:
        return config.resources.reuse_actors
    return not joins_existing_cluster(config.ray)
