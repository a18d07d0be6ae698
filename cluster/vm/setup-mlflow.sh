#!/usr/bin/env bash
# Runs on the head node of a VM cluster (cluster launcher `head_setup_commands`): PostgreSQL
# (Debian/Ubuntu package, listening on localhost only) and the MLflow tracking server with
# basic-auth as a systemd service bound to 127.0.0.1:5000, artifacts in an object store.
#
# Usage: setup-mlflow.sh ARTIFACT_URI     e.g. s3://my-bucket/maskvae/mlflow or gs://my-bucket/maskvae/mlflow
#
# Passwords are generated on the head the first time (~/.maskvae, mode 700) and never leave it:
#   mlflow-server.env  the server's database password, admin password and CSRF key
#   mlflow-client.env  the `maskvae` MLflow user the study driver writes as (sourced by the
#                      head's `ray start`, so Ray jobs inherit it)
# Read the admin password for the UI with: ray exec CLUSTER.yaml 'cat ~/.maskvae/mlflow-admin-password'
set -euo pipefail
artifacts="${1:?usage: setup-mlflow.sh ARTIFACT_URI (s3://... or gs://...)}"
venv="$HOME/maskvae-venv"
secrets="$HOME/.maskvae"
port=5000
install -d -m 700 "$secrets"

secret() {  # secret NAME: the stored value, generated once
  local file="$secrets/$1"
  [[ -s "$file" ]] || (umask 077; openssl rand -hex 24 > "$file")
  cat "$file"
}
db_password="$(secret db-password)"
admin_password="$(secret mlflow-admin-password)"
study_password="$(secret mlflow-study-password)"
flask_key="$(secret mlflow-flask-secret-key)"

if ! command -v pg_ctlcluster >/dev/null; then
  sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi
# Debian's default cluster listens on localhost only; password auth for TCP connections.
sudo -u postgres psql -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow') THEN CREATE ROLE mlflow LOGIN; END IF;
END \$\$;
ALTER ROLE mlflow PASSWORD '$db_password';
SQL
for db in mlflow mlflow_auth; do
  sudo -u postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || sudo -u postgres createdb -O mlflow "$db"
done

cat > "$secrets/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow_auth
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
INI
(umask 077; cat > "$secrets/mlflow-server.env" <<ENV
MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow
PGPASSWORD=$db_password
MLFLOW_AUTH_CONFIG_PATH=$secrets/basic_auth.ini
MLFLOW_AUTH_ADMIN_USERNAME=admin
MLFLOW_AUTH_ADMIN_PASSWORD=$admin_password
MLFLOW_FLASK_SERVER_SECRET_KEY=$flask_key
ENV
cat > "$secrets/mlflow-client.env" <<ENV
MLFLOW_TRACKING_URI=http://127.0.0.1:$port
MLFLOW_TRACKING_USERNAME=maskvae
MLFLOW_TRACKING_PASSWORD=$study_password
ENV
)

sudo tee /etc/systemd/system/maskvae-mlflow.service >/dev/null <<UNIT
[Unit]
Description=MLflow tracking server for maskvae (basic-auth, 127.0.0.1:$port)
After=network-online.target postgresql.service
Wants=postgresql.service

[Service]
User=$USER
EnvironmentFile=$secrets/mlflow-server.env
ExecStart=$venv/bin/mlflow server --app-name basic-auth --host 127.0.0.1 --port $port --workers 4 --artifacts-destination $artifacts
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
sudo systemctl daemon-reload
sudo systemctl enable --now maskvae-mlflow.service

for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 2
done
# The study writes as its own user (owner of the experiments it creates), not as admin.
status="$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$admin_password" -H 'Content-Type: application/json' \
  -X POST "http://127.0.0.1:$port/api/2.0/mlflow/users/create" \
  -d "{\"username\": \"maskvae\", \"password\": \"$study_password\"}")"
case "$status" in
  200|400) echo "MLflow ready on 127.0.0.1:$port (user maskvae)";;  # 400: the user exists already
  *) echo "MLflow: creating user maskvae failed (HTTP $status)" >&2; exit 1;;
esac
