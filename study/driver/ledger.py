"""The live trial ledger (`trials.json`): each trial's latest status, kept by the driver as events
arrive and rewritten from Ray's record at the end of each phase, so `maskvae study status` answers
without importing Ray or torch."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from study.search.trials import TrialRecord

# Rewriting the file costs more as a study grows (milliseconds at 2,000 trials): at most once a
# second keeps it negligible, and a trailing write keeps the file at most a second behind.
MIN_INTERVAL_S = 1.0


def entry(record: TrialRecord, metric: str) -> dict[str, Any]:
    return {"phase": record.phase, "trial_id": record.trial_id, "hypothesis": record.hypothesis,
            "status": record.status, "failed": record.failed, "objective": record.value(metric),
            "epochs": record.epochs, "attempts": record.attempts,
            "error": (record.error or "").strip().splitlines()[-1][:200] if record.error else None}


class TrialLedger:
    def __init__(self, path: Path, metric: str):
        self.path = Path(path)
        self.metric = metric
        self.trials: dict[str, dict[str, Any]] = load(self.path).get("trials", {})
        self._written = 0.0
        self._lock = threading.Lock()  # the trailing write runs on a timer thread
        self._trailing: threading.Timer | None = None

    def update(self, record: TrialRecord) -> None:
        with self._lock:
            self.trials[f"{record.phase}:{record.trial_id}"] = entry(record, self.metric)
        self.write()

    def replace_phase(self, phase: str, records: list[TrialRecord]) -> None:
        """Ray's record is the truth at a phase's end (trials lost with a killed driver drop out)."""
        with self._lock:
            self.trials = {k: v for k, v in self.trials.items() if v["phase"] != phase}
            for record in records:
                self.trials[f"{record.phase}:{record.trial_id}"] = entry(record, self.metric)
        self.write(force=True)

    def write(self, *, force: bool = False) -> None:
        """Now if forced or a second has passed since the last write; else once that second is up."""
        with self._lock:
            wait = MIN_INTERVAL_S - (time.monotonic() - self._written)
            if not force and wait > 0:
                if self._trailing is None:
                    self._trailing = threading.Timer(wait, self._write_trailing)
                    self._trailing.daemon = True
                    self._trailing.start()
                return
            if self._trailing is not None:
                self._trailing.cancel()
                self._trailing = None
            self._write_locked()

    def _write_trailing(self) -> None:
        with self._lock:
            self._trailing = None
            self._write_locked()

    def _write_locked(self) -> None:
        payload = {"updated": dt.datetime.now(dt.timezone.utc).isoformat(),
                   "driver": {"pid": os.getpid(), "host": socket.gethostname()}, "trials": self.trials}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.path)
        self._written = time.monotonic()

    # Listener protocol
    def trial_started(self, record: TrialRecord) -> None:
        self.update(record)

    def trial_result(self, record: TrialRecord, result: dict[str, Any]) -> None:
        self.update(record)

    def trial_finished(self, record: TrialRecord) -> None:
        self.update(record)


def load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def driver_alive(ledger: dict[str, Any]) -> bool:
    """Whether the process that wrote the ledger still runs (only knowable on its own host)."""
    driver = ledger.get("driver") or {}
    if driver.get("host") != socket.gethostname() or not driver.get("pid"):
        return True
    try:
        os.kill(int(driver["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
