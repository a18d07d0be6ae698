#!/usr/bin/env bash
# Runs on every node of a VM cluster (cluster launcher `setup_commands`): installs maskvae from the
# checkout that `file_mounts` copied to ~/maskvae into ~/maskvae-venv, and makes token
# authentication the default for every shell on the node.
set -euo pipefail
RAY_VERSION="${RAY_VERSION:-2.60.0}"
venv="$HOME/maskvae-venv"

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
# The cluster's Ray must match the laptop's `ray up` / `ray job submit` (same release).
"$venv/bin/pip" install --quiet -e "$HOME/maskvae" "ray[default,tune]==$RAY_VERSION" \
  "mlflow[auth]" "psycopg[binary]" boto3 google-cloud-storage

# The token is the same file on every node (file_mounts copies ~/.ray/auth_token from the laptop).
chmod 600 "$HOME/.ray/auth_token"
marker="# maskvae cluster settings"
if ! grep -qF "$marker" "$HOME/.bashrc"; then
  cat >> "$HOME/.bashrc" <<PROFILE
$marker
export RAY_AUTH_MODE=token
export PATH="$venv/bin:\$PATH"
PROFILE
fi
