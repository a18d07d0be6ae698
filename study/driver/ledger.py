"""The live trial ledger (`trials.json`): each trial's latest status, kept by the driver as events
arrive and rewritten from Ray's record at the end of each phase, so `maskvae study status` answers
without importing Ray or torch."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from study.search.trials import TrialRecord

# Rewriting the file costs more as a study grows; at most once a second keeps it negligible.
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

    def update(self, record: TrialRecord, *, force: bool = False) -> None:
        self.trials[f"{record.phase}:{record.trial_id}"] = entry(record, self.metric)
        self.write(force=force)

    def replace_phase(self, phase: str, records: list[TrialRecord]) -> None:
        """Ray's record is the truth at a phase's end (trials lost with a killed driver drop out)."""
        self.trials = {k: v for k, v in self.trials.items() if v["phase"] != phase}
        for record in records:
            self.trials[f"{record.phase}:{record.trial_id}"] = entry(record, self.metric)
        self.write(force=True)

    def write(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._written < MIN_INTERVAL_S:
            return
        payload = {"updated": dt.datetime.now(dt.timezone.utc).isoformat(),
                   "driver": {"pid": os.getpid(), "host": socket.gethostname()}, "trials": self.trials}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
        self._written = time.monotonic()

    # Listener protocol
    def trial_started(self, record: TrialRecord) -> None:
        self.update(record)

    def trial_result(self, record: TrialRecord, result: dict[str, Any]) -> None:
        self.update(record)

    def trial_finished(self, record: TrialRecord) -> None:
        self.update(record, force=True)


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
