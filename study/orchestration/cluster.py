"""Connecting to (or starting) Ray, and what the cluster offers."""
from __future__ import annotations

import os
from typing import Any

import ray

from study.config.study import RayConfig, StudyConfig
from study.training import faults


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
