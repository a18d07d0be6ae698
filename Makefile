# Each target creates or refreshes the virtual environment it needs, so both README commands work on
# a fresh machine; the install is redone when pyproject.toml changes.
#   setup      what a study needs (torch, Ray, MLflow, Optuna, ...): `make smoke`
#   setup-dev  that plus the test tools (pytest, hypothesis, piq, ...): `make test`, `make bench`
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
# pip's own progress: one line per package collected, a bar per download.
PIP := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on
# For the commands below that take a study directory: make status DIR=runs/maskvae-smoke-...
DIR ?=
TRACKING_URI ?= sqlite:///mlflow.db
PORT ?= 5000

.PHONY: setup setup-dev smoke test bench status report resume mlflow-ui clean clean-results

setup: $(RUNTIME_STAMP)

setup-dev: $(DEV_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@echo "==> Upgrading pip in $(VENV): a recent pip shows a progress bar while it installs, not only while it downloads"
	$(BIN)/python -m pip install --disable-pip-version-check --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	@echo "==> Installing maskvae and what a study needs into $(VENV): about 140 packages, 3.2 GiB of wheels, 6.5 GiB"
	@echo "    installed (torch with its CUDA libraries is 5.2 GiB of it); 3-4 minutes when the wheels are at hand"
	$(PIP) -e .
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) pyproject.toml
	@echo "==> Adding the test tools (pytest, hypothesis, scikit-image, piq, the cluster-test clients) to $(VENV)"
	$(PIP) -e ".[dev]"
	@touch $@

## The main job: the smoke study on synthetic faces, local Ray, local MLflow.
smoke: setup
	$(BIN)/maskvae study run
	@echo
	@echo "The maskvae and mlflow commands above run inside $(VENV): first 'source $(VENV)/bin/activate',"
	@echo "or use 'make status DIR=...', 'make report DIR=...' and 'make mlflow-ui'."

## The test suite (CPU, real Ray/Optuna/MLflow on loopback).
# pytest exits 5 when it collects nothing: a suite that ran no test is a failure here. The 15
# slowest tests are listed at the end, to keep the suite within its time budget.
test: setup-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: setup-dev
	$(BIN)/python -m benchmarks

## A study directory's phase and trials, its report, or its continuation: make status DIR=runs/...
status report resume: setup
	@test -n "$(DIR)" || { echo "make $@: pass the study directory, e.g. make $@ DIR=runs/maskvae-smoke-..." >&2; exit 2; }
	$(BIN)/maskvae study $@ "$(DIR)"

## The MLflow UI on this machine only: make mlflow-ui [TRACKING_URI=...] [PORT=5000]
mlflow-ui: setup
	@case "$(TRACKING_URI)" in sqlite:///mlflow.db) test -f mlflow.db || { echo "make mlflow-ui: no mlflow.db here yet: run make smoke first, or pass TRACKING_URI=..." >&2; exit 2; };; esac
	@$(BIN)/python -c "import socket, sys; socket.socket().bind(('127.0.0.1', int(sys.argv[1])))" "$(PORT)" 2>/dev/null \
		|| { echo "make mlflow-ui: port $(PORT) on 127.0.0.1 is in use (another MLflow UI?): pass PORT=..." >&2; exit 2; }
	@echo "==> MLflow UI on http://127.0.0.1:$(PORT) (Ctrl-C stops it)"
	$(BIN)/mlflow ui --backend-store-uri "$(TRACKING_URI)" --host 127.0.0.1 --port $(PORT)

## The environment and build leftovers only: studies (runs/) and their MLflow records stay.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

## Deletes every study and its MLflow records here, after asking (CONFIRM=yes skips the question).
clean-results:
	@echo "This deletes runs/ mlruns/ mlartifacts/ and mlflow.db (every study and its MLflow records) here."
	@test "$(CONFIRM)" = yes || { printf "Type yes to delete them: "; read answer; test "$$answer" = yes; } \
		|| { echo "make clean-results: nothing deleted" >&2; exit 1; }
	rm -rf runs mlruns mlflow.db mlflow.db-wal mlflow.db-shm mlartifacts
