# Each target creates or refreshes its own virtual environment, so both README commands work on
# a fresh machine. The environment is rebuilt whenever pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup smoke test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

## The main job: the smoke study on synthetic faces, local Ray, local MLflow.
smoke: setup
	$(BIN)/maskvae study run

## The test suite (CPU, real Ray/Optuna/MLflow on loopback).
# pytest exits 5 when it collects nothing: a suite that ran no test is a failure here.
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs mlruns mlflow.db mlartifacts
