"""The local multi-node cluster script (`cluster/local/localcluster.py`) for the cluster tests."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.helpers.scripts import load_script


def load_localcluster():
    return load_script("cluster/local/localcluster.py")


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
