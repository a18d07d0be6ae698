"""Tune experiments of different studies start in different seconds on one host.

Tune stages an experiment's files on the driver's node in
`<Ray session>/artifacts/<start time, to the second>/<experiment name>/` and copies that directory
to the experiment's storage. maskvae names every study's experiments `tune` and `final`, and the
drivers of Ray jobs all run on the head node, in the cluster's one session: two studies whose
phases started in the same second shared the directory, and each copied the other's trials into
its own storage (two studies submitted together did this). A host-wide lock, taken before
`Tuner.fit` and given back once Tune has set the experiment up (its callbacks' `setup`) and the
clock has left that second, gives every start a directory of its own.
"""
from __future__ import annotations

import datetime
import fcntl
import os
import tempfile
import time
from pathlib import Path

from ray.tune import Callback

LOCK_FILE = Path(tempfile.gettempdir()) / "maskvae-tune-start.lock"
STAMP = "%Y-%m-%d_%H-%M-%S"  # the resolution of Tune's staging directory names


class StartGate(Callback):
    """Held from `acquire()` (before `Tuner.fit`) until Tune calls `setup`, or `release()`."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def __getstate__(self) -> dict:
        return {"_fd": None}  # Tune pickles its callbacks with the tuner; a lock is this process's own

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            return  # a lock file another user owns and we cannot open: start without the gate
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        second = datetime.datetime.now().strftime(STAMP)
        while datetime.datetime.now().strftime(STAMP) == second:
            time.sleep(0.02)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self.release()
