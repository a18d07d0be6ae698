#!/usr/bin/env bash
# Start the local three-node Ray cluster (head + 2 workers), PostgreSQL and the MLflow server.
# Usage: cluster/local/up.sh [--state DIR] [--workers N]; then `source <state>/env.sh`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "${PYTHON:-$repo/.venv/bin/python}" "$repo/cluster/local/localcluster.py" up "$@"
