"""The Makefile's user-facing targets: results are never deleted without asking, and the MLflow UI
target fails by name when its port is taken (mlflow ui itself exits 0 then)."""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args, cwd=REPO, stdin="", extra_env=None):
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=cwd, input=stdin, capture_output=True,
        text=True, timeout=60, env=extra_env)


@pytest.fixture
def project_copy(tmp_path):
    """A directory with the Makefile, a fake environment and a user's results."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / "runs" / "maskvae-smoke-1").mkdir(parents=True)
    (tmp_path / "runs" / "maskvae-smoke-1" / "REPORT.md").write_text("results\n")
    (tmp_path / "mlflow.db").write_text("records\n")
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    return tmp_path


def test_clean_removes_the_environment_but_keeps_results(project_copy):
    done = _make("clean", cwd=project_copy)
    assert done.returncode == 0, done.stderr
    assert not (project_copy / ".venv").exists()
    assert not (project_copy / "pkg" / "__pycache__").exists()
    assert (project_copy / "runs" / "maskvae-smoke-1" / "REPORT.md").read_text() == "results\n"
    assert (project_copy / "mlflow.db").exists()


def test_clean_results_asks_and_keeps_everything_unless_told_yes(project_copy):
    refused = _make("clean-results", cwd=project_copy, stdin="no\n")
    assert refused.returncode != 0
    assert "nothing deleted" in refused.stderr
    assert (project_copy / "runs").is_dir() and (project_copy / "mlflow.db").exists()

    confirmed = _make("clean-results", cwd=project_copy, stdin="yes\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert not (project_copy / "runs").exists() and not (project_copy / "mlflow.db").exists()


def test_mlflow_ui_on_a_busy_port_fails_by_name(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        # -o: never (re)install the environment from the test; the one running the tests is used.
        done = _make(f"VENV={VENV}", "-o", f"{VENV}/.installed-runtime", "-o", f"{VENV}/bin/python",
                     "mlflow-ui", f"PORT={port}", f"TRACKING_URI=sqlite:///{tmp_path}/mlflow.db")
    finally:
        busy.close()
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert "MLflow UI on" not in done.stdout
