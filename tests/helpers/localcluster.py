"""The local multi-node cluster script (`cluster/local/localcluster.py`) for the cluster tests."""
from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_localcluster():
    spec = importlib.util.spec_from_file_location("localcluster", REPO / "cluster" / "local" / "localcluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def postgres_unavailable(localcluster) -> str | None:
    """Why PostgreSQL cannot run here, or None: the only reason the cluster tests may skip."""
    try:
        localcluster.postgres_bin()
    except localcluster.ClusterError as error:
        return str(error)
    root = Path(tempfile.mkdtemp(prefix="mvpg-probe-", dir="/tmp"))
    try:
        localcluster.start_postgres(root, localcluster.free_ports(1)[0], "probe")
    except (localcluster.ClusterError, subprocess.CalledProcessError, OSError) as error:
        detail = getattr(error, "stderr", b"") or b""
        return f"PostgreSQL cannot start here: {error} {detail.decode(errors='replace') if isinstance(detail, bytes) else detail}"
    finally:
        localcluster.stop_postgres({"postgres": {"root": str(root), "bin": str(localcluster.postgres_bin()),
                                                 "user": list(localcluster.postgres_user() or []) or None},
                                    "state_dir": str(root)})
    return None
