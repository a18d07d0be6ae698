"""MLflow unreachable at start (fails fast) and going away mid-study (training goes on; sync backfills) (9)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from study.cli import main
from tests.studyproc import StudyProcess, mlflow_runs, set_args, study_overrides

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_fails_preflight_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code = main(["study", "run", "--set", f"mlflow.tracking_uri=http://127.0.0.1:{_free_port()}",
                 "--out", str(tmp_path / "study")])
    assert code == 2 and time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "MLflow tracking server unreachable" in err and "mlflow.tracking_uri" in err
    assert not (tmp_path / "study").exists() and not (tmp_path / "runs").exists()


class MlflowServer:
    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.process = None

    def start(self) -> "MlflowServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def stop(self) -> None:
        # The server forks workers: end the whole process group, or a worker would keep answering.
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_mlflow_going_away_mid_study_then_sync_backfills_everything(tmp_path, synthetic_dataset):
    server = MlflowServer(tmp_path, _free_port()).start()
    try:
        args = ["study", "run", "--out", str(tmp_path / "study")]
        args += set_args(study_overrides(synthetic_dataset, server.uri, losses="[l2, ssim]", masks="[true]", trials=2,
                                     epochs=2, seeds=1))
        slow = [{"point": "epoch_start", "phase": "tune", "action": "sleep", "seconds": 0.5}]
        study = StudyProcess(args, cwd=tmp_path, faults=slow)
        study.wait_for(lambda: "[tune   1/" in study.output, timeout=300, what="the first finished trial")
        server.stop()
        code = study.wait(600)
        assert code == 0, study.output[-4000:]
        assert "MLflow:" in study.output and "sync-mlflow" in study.output
        assert json.loads((tmp_path / "study" / "study.json").read_text())["phase"] == "done"

        server.start()
        assert main(["study", "sync-mlflow", str(tmp_path / "study")]) == 0
        client, runs = mlflow_runs(server.uri)
        trials = pd.read_parquet(tmp_path / "study" / "results" / "trials.parquet")
        by_trial = {r.data.tags.get("maskvae.trial_id"): r for r in runs}
        for trial_id in trials.trial_id:
            run = by_trial[trial_id]
            assert run.info.status == "FINISHED"
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "epoch"))
            assert steps == [1, 2], (trial_id, steps)
        finals = [r for r in runs if r.data.tags.get("maskvae.phase") == "final"]
        assert len(finals) == 2 and all(r.info.status == "FINISHED" for r in finals)
        parents = [r for r in runs if r.data.tags.get("maskvae.role") == "hypothesis"]
        assert len(parents) == 2 and all("paper: composed full/1-SSIM" in p.data.metrics for p in parents)
        assert client.get_model_version_by_alias("reliability", "champion") is not None
        before = len(runs)
        assert main(["study", "sync-mlflow", str(tmp_path / "study")]) == 0  # idempotent
        assert len(mlflow_runs(server.uri)[1]) == before
    finally:
        server.stop()
