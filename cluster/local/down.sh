#!/usr/bin/env bash
# Stop exactly what cluster/local/up.sh started (by recorded PID), nothing else on the machine.
# Usage: cluster/local/down.sh [--state DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "${PYTHON:-$repo/.venv/bin/python}" "$repo/cluster/local/localcluster.py" down "$@"
