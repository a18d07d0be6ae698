"""Soak: a smoke study with 4 concurrent trials while random trial workers are SIGKILLed."""
from __future__ import annotations

import random
import signal
import time

import pandas as pd
import pytest

from tests.studyproc import StudyProcess, mlflow_runs, set_args, study_overrides, trial_workers

pytestmark = pytest.mark.slow
MAX_KILLS = 6


def test_soak_random_worker_kills(tmp_path, synthetic_dataset):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["study", "run", "--out", str(tmp_path / "study"), "--set", "resources.cpus_per_trial=0.5",
            "--set", "resources.max_concurrent_trials=4", "--set", "resources.max_failures=4"]
    args += set_args(study_overrides(synthetic_dataset, tracking, losses="[l1, l2, ssim, ssim+l1, ssim+l2]", trials=2,
                                 epochs=2, seeds=1))
    slow = [{"point": "epoch_start", "phase": "tune", "action": "sleep", "seconds": 0.8}]
    study = StudyProcess(args, cwd=tmp_path, faults=slow)
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 600
    while study.process.poll() is None and time.monotonic() < deadline:
        time.sleep(rng.uniform(2.0, 4.0))
        workers = trial_workers()
        if workers and kills < MAX_KILLS and "final phase" not in study.output:
            try:
                rng.choice(workers).send_signal(signal.SIGKILL)
                kills += 1
            except Exception:
                pass
    assert study.wait(60) == 0, study.output[-4000:]
    assert kills >= 3, "the soak test must actually have killed workers"
    trials = pd.read_parquet(tmp_path / "study" / "results" / "trials.parquet")
    assert len(trials) == 20 and trials.groupby("hypothesis").size().eq(2).all()
    assert (trials.status == "TERMINATED").all(), trials[["hypothesis", "status", "error"]]
    client, runs = mlflow_runs(tracking)
    tune_runs = [r for r in runs if r.data.tags.get("maskvae.phase") == "tune"]
    assert len(tune_runs) == 20 and all(r.info.status == "FINISHED" for r in tune_runs)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    retried = [r for r in tune_runs if int(r.data.tags.get("maskvae.attempt", "1")) > 1]
    assert retried, "killed trials were retried"
    for run in retried:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert sorted(steps) == [1, 2]
