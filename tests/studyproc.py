"""Run `maskvae` studies as real processes for the reliability tests, and poke them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def study_overrides(data: Path, tracking: str, *, losses: str = "[l2]", masks: str = "[true, false]", trials: int = 1,
                    epochs: int = 3, seeds: int = 1, extra: list[str] | None = None) -> list[str]:
    values = [
        f"data.path={data}", "data.synthesize_if_missing=null", f"grid.losses={losses}", f"grid.masks={masks}",
        f"search.trials_per_hypothesis={trials}", f"train.epochs={epochs}", "train.max_train_batches=3",
        "train.max_val_batches=1", f"final.seeds={seeds}", "final.grid_faces=4", f"mlflow.tracking_uri={tracking}",
        "ray.num_cpus=2", "ray.dashboard=false", "scheduler.kind=fifo", "train.model.width=0.125", "train.model.latent_dim=16",
        "name=reliability",
    ]
    return values + list(extra or [])


def set_args(values: list[str]) -> list[str]:
    """`--set` options for the CLI, one per `key=value`."""
    return [arg for value in values for arg in ("--set", value)]


class StudyProcess:
    """`maskvae study ...` in its own process; stdout collected line by line."""

    def __init__(self, args: list[str], cwd: Path, faults: list[dict] | None = None, env: dict | None = None):
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        if faults:
            environment["MASKVAE_FAULTS"] = json.dumps(faults)
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=cwd, env=environment,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def wait_for(self, predicate, timeout: float = 300, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"study exited ({self.process.returncode}) before {what}:\n{self.output[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output[-3000:]}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


def trial_workers() -> list[psutil.Process]:
    """Ray worker processes currently running a trial (their title is `ray::TuneTrial.train` or
    `ray::FinalRun.train`, after the trial actor classes)."""
    from study.orchestration.trainables import ACTOR_CLASS_NAMES

    titles = tuple(f"ray::{name}.train" for name in ACTOR_CLASS_NAMES.values())
    # process_iter prefetches the attributes, leaving None where a process is gone or hidden.
    return [proc for proc in psutil.process_iter(["pid", "cmdline"])
            if any(title in " ".join(proc.info["cmdline"] or []) for title in titles)]


def checkpoints(study_dir: Path, phase: str = "tune") -> list[Path]:
    return sorted((study_dir / "ray" / phase).glob("*/checkpoint_*"))


def search_state(study_dir: Path):
    """The HypothesisSearcher state Tune saved with the tuning experiment."""
    from study.orchestration.experiments import saved_search

    return saved_search(str(study_dir / "ray"))


def mlflow_runs(tracking: str, experiment: str = "reliability"):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id], max_results=1000) if found else [])
