#!/usr/bin/env python3
"""An autoscaling Ray cluster on one machine: Ray's own autoscaler with its fake multi-node provider.

    python cluster/local/autoscalecluster.py up      [--state DIR] [--config cluster/local/autoscaling.yaml]
    python cluster/local/autoscalecluster.py env     [--state DIR]      # client settings, to `source`
    python cluster/local/autoscalecluster.py preempt NODE_ID [--state DIR]
    python cluster/local/autoscalecluster.py down    [--state DIR]

`up` starts a Ray head (no CPUs, token auth, dashboard on 127.0.0.1, ports nobody else holds) with
`RAY_FAKE_CLUSTER=1` and `--autoscaling-config`: the autoscaler then launches the config's worker
types as real raylets on this machine when trials wait for resources, and removes them when idle.
`preempt` ends one worker node the way a cloud reclaims a spot VM: its raylet and everything under
it get SIGKILL, with no warning. `down` stops exactly what `up` started and what the autoscaler
launched from it (localcluster.py's PID-scoped shutdown; never a bare `ray stop`).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml  # PyYAML: installed with Ray, which this script needs anyway

HERE = Path(__file__).resolve().parent
DEFAULT_STATE = HERE.parents[1] / "runs" / "autoscale-cluster"
DEFAULT_CONFIG = HERE / "autoscaling.yaml"
RESOLVED_CONFIG = "autoscaling.yaml"


def _localcluster():
    """The local three-node cluster's helpers (ports, token, start and PID-scoped stop)."""
    spec = importlib.util.spec_from_file_location("localcluster", HERE / "localcluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lc = _localcluster()


def log(message: str) -> None:
    print(f"[autoscale-cluster] {message}", flush=True)


def client_env(state: dict) -> dict[str, str]:
    return lc.ray_client_env(state)  # no MLflow server here: studies bring their own tracking URI


def resolve_config(source: Path, gcs_address: str) -> dict:
    try:
        config = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise lc.ClusterError(f"{source}: {error}") from None
    provider = config.get("provider") if isinstance(config, dict) else None
    if not isinstance(provider, dict) or not (provider.get("type") == "fake_multinode" or (
            provider.get("type") == "external" and str(provider.get("module", "")).startswith("fake_provider."))):
        raise lc.ClusterError(f"{source}: provider must be Ray's fake_multinode or cluster/local/fake_provider.py's")
    # The fake provider joins its nodes to 6379 unless told otherwise; this head has a free port.
    config["provider"]["gcs_address"] = gcs_address
    return config


def up(state_dir: Path, config_file: Path) -> dict:
    state_dir = state_dir.resolve()
    gcs_port, dashboard_port, client_port = lc.free_ports(3)
    gcs_address = f"127.0.0.1:{gcs_port}"
    config = resolve_config(config_file, gcs_address)  # a bad config stops here, before anything exists
    lc.claim_state_dir(state_dir, "autoscalecluster.py")
    ray_root = Path(tempfile.mkdtemp(prefix="mvas-", dir="/tmp"))  # short: unix socket paths are capped
    lc.write_private(state_dir / RESOLVED_CONFIG, yaml.safe_dump(config))
    token = secrets.token_hex(32)
    lc.write_private(state_dir / "ray" / "auth_token", token)
    state = {
        "state_dir": str(state_dir), "ray_temp_root": str(ray_root), "token_path": str(state_dir / "ray" / "auth_token"),
        "gcs_address": gcs_address, "dashboard": f"http://127.0.0.1:{dashboard_port}",
        "ports": {"gcs": gcs_port, "dashboard": dashboard_port, "ray_client": client_port},
        "postgres": None, "pids": {}, "config": str(state_dir / RESOLVED_CONFIG),
    }
    lc.save_state(state_dir, state)
    try:
        started = time.monotonic()
        # The autoscaler runs in the head's monitor process and starts every worker raylet from
        # there, so the workers inherit this environment: the token, and the fake provider's switch.
        env = lc.ray_env(state_dir, {"RAY_FAKE_CLUSTER": "1"})
        # The GPUs are counts only; a caller's CUDA_VISIBLE_DEVICES (even empty) would make every
        # GPU worker's raylet refuse to start with GPUs it cannot see.
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))  # fake_provider.py
        head = lc.start_node("head", [
            "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={client_port}", "--include-dashboard=true",
            "--num-cpus=0", "--num-gpus=0", "--object-store-memory=100000000", f"--temp-dir={ray_root}",
            f"--autoscaling-config={state_dir / RESOLVED_CONFIG}", *lc.node_ports("head", state["ports"]),
        ], env, state_dir / "logs" / "ray-head.log")
        state["pids"]["ray-head"] = head.pid
        lc.save_state(state_dir, state)
        lc.wait_for("the Ray head", lambda: len(lc.alive_nodes(state["dashboard"], token)) >= 1, 60,
                    log_file=state_dir / "logs" / "ray-head.log")
        env_lines = [f"export {key}='{value}'" for key, value in client_env(state).items()]
        lc.write_private(state_dir / lc.ENV_FILE, "\n".join(env_lines) + "\n")
        log(f"up in {time.monotonic() - started:.0f} s: Ray dashboard {state['dashboard']}, GCS {gcs_address}; "
            f"workers start on demand. Client settings: source {state_dir / lc.ENV_FILE}")
        return state
    except BaseException:
        log("start failed; stopping what was started")
        down(state_dir)
        raise


def node_processes(state: dict, node_id: str) -> set[int]:
    """The raylet of `node_id` (its command line names the node) and everything under it: the
    node's agents and trial workers."""
    flags = (f"--node_id={node_id}", f"--node-id={node_id}")
    tree = lc.process_tree(list(state.get("pids", {}).values()), [state["ray_temp_root"]])
    roots = [pid for pid in tree if any(flag in lc._cmdline(pid) for flag in flags)]
    return lc.process_tree(roots, [])


def preempt(state_dir: Path, node_id: str) -> set[int]:
    state = lc.load_state(state_dir.resolve())
    if state is None:
        raise lc.ClusterError(f"no cluster state in {state_dir}")
    token = Path(state["token_path"]).read_text().strip()
    nodes = {n["node_id"]: n for n in lc.alive_nodes(state["dashboard"], token)}
    if node_id not in nodes:
        raise lc.ClusterError(f"node {node_id}: not an alive node of this cluster ({', '.join(nodes) or 'none'})")
    if nodes[node_id].get("is_head_node"):
        raise lc.ClusterError(f"node {node_id} is the head: preempt a worker node")
    pids = node_processes(state, node_id)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log(f"preempted node {node_id}: {len(pids)} processes killed")
    return pids


def down(state_dir: Path) -> None:
    lc.down(state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "env", "preempt"])
    parser.add_argument("node_id", nargs="?", help="preempt: the worker node's id (Ray dashboard, or trials.parquet)")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"autoscaling config (default {DEFAULT_CONFIG})")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.state, args.config)
        elif args.command == "down":
            down(args.state)
        elif args.command == "preempt":
            if not args.node_id:
                parser.error("preempt needs a NODE_ID")
            preempt(args.state, args.node_id)
        else:
            state = lc.load_state(args.state.resolve())
            if state is None:
                raise lc.ClusterError(f"no cluster state in {args.state}")
            print((args.state.resolve() / lc.ENV_FILE).read_text(), end="")
    except (lc.ClusterError, OSError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
