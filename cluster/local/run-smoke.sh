#!/usr/bin/env bash
# The smoke study on a local three-node Ray cluster, in one command:
#   up (PostgreSQL + MLflow with auth + Ray head and 2 workers with token auth),
#   `ray job submit --working-dir . -- maskvae study run ...`, then down.
#
# Usage: cluster/local/run-smoke.sh [--keep] [--state DIR] [--out DIR] [-- extra `maskvae study run` options]
#   --keep   leave the cluster running afterwards (dashboard, MLflow UI); stop it with cluster/local/down.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
python="${PYTHON:-$repo/.venv/bin/python}"
state="$repo/runs/local-cluster"
out="$repo/runs/cluster-smoke-$(date +%Y%m%d-%H%M%S)"
keep=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep) keep=1; shift ;;
    --state) state="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option: $1 (study options go after --)" >&2; exit 2 ;;
  esac
done
state="$(mkdir -p "$state" && cd "$state" && pwd)"

"$python" cluster/local/localcluster.py up --state "$state"
if [[ $keep -eq 0 ]]; then
  trap '"$python" cluster/local/localcluster.py down --state "$state"' EXIT
fi
# RAY_API_SERVER_ADDRESS, RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH, MLFLOW_TRACKING_* for this cluster.
source "$state/env.sh"

# All three nodes share this machine's disk, so absolute local paths are visible to every node
# (on a real cluster they must be object-store URIs or a shared mount). The head has no CPUs, so
# trials run on the two workers; two concurrent trials let Tune place one on each.
# The dashboard's Jobs page shows the job_name metadata as the job's Name.
ray job submit --working-dir . --submission-id "maskvae-smoke-$(date +%Y%m%d-%H%M%S)" \
  --metadata-json "{\"job_name\": \"maskvae $(basename "$out")\"}" -- \
  maskvae study run --out "$out" \
    --set mlflow.tracking_uri="$MLFLOW_TRACKING_URI" \
    --set data.path="$repo/runs/data/synthetic-32px" \
    --set resources.max_concurrent_trials=2 \
    "${extra[@]}"

echo "report: $out/REPORT.md"
if [[ $keep -eq 1 ]]; then
  echo "cluster still up: Ray dashboard $RAY_API_SERVER_ADDRESS, MLflow $MLFLOW_TRACKING_URI (user \$MLFLOW_TRACKING_USERNAME, password in $state/env.sh)"
  echo "stop it with: cluster/local/down.sh --state $state"
fi
