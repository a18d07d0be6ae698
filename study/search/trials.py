"""One record per trial outcome, and what the driver's listeners hear about trials.

`TrialRecord` is built once where Ray's record is read (the experiment directory, or a live
callback) and is all anything downstream sees: tracking, progress, status, selection, reports.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from study.search.objective import finite_or_none


class Phase:
    """A study's phases, in the order it passes through them. Trials run in TUNE and FINAL only;
    each of those is also the name of its Ray experiment and the phase of its `TrialRecord`s."""

    TUNE: Final = "tune"
    FINAL: Final = "final"
    RANK: Final = "rank"
    DONE: Final = "done"
    ORDER: Final = (TUNE, FINAL, RANK, DONE)
    TRIALS: Final = (TUNE, FINAL)


PhaseName = Literal["tune", "final", "rank", "done"]
# Ray's trial states that mean the trial has ended.
ENDED = ("TERMINATED", "ERROR")


@dataclass(frozen=True)
class TrialRecord:
    phase: PhaseName
    trial_id: str
    config: Mapping[str, Any]
    status: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 1
    error: str | None = None
    checkpoint: str | None = None
    history: tuple[Mapping[str, Any], ...] = ()

    @property
    def hypothesis(self) -> str:
        return str(self.config.get("hypothesis", "?"))

    @property
    def index(self) -> int | None:
        return self.config.get("index")

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def failed(self) -> bool:
        """Crashed (Ray ERROR) or stopped itself with a reason (a non-finite loss)."""
        return self.status == "ERROR" or bool(self.error)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def mlflow_status(self) -> str:
        """FAILED, FINISHED, or KILLED for a trial that never ended (lost with its driver)."""
        if self.failed:
            return "FAILED"
        return "FINISHED" if self.status == "TERMINATED" else "KILLED"

    @property
    def outcome(self) -> str:
        """What people read: finished, failed, running, pending, ..."""
        return trial_outcome(self.status, self.failed)

    def value(self, metric: str) -> float | None:
        """The trial's last finite value of `metric`; None for failed trials, which are never chosen."""
        return None if self.failed else finite_or_none(self.metrics.get(metric))

    @property
    def epochs(self) -> int:
        return int(finite_or_none(self.metrics.get("epoch")) or 0)


def trial_outcome(status: str, failed: bool) -> str:
    """A trial's outcome as people read it, from Ray's status and whether it failed: finished, failed,
    running, pending, ..."""
    if failed:
        return "failed"
    return {"TERMINATED": "finished"}.get(status, status.lower())


class TrialListener(Protocol):
    def trial_started(self, record: TrialRecord) -> None: ...

    def trial_result(self, record: TrialRecord, result: dict[str, Any]) -> None: ...

    def trial_finished(self, record: TrialRecord) -> None: ...


class Listeners:
    """Fan one event out to several listeners."""

    def __init__(self, *listeners: TrialListener | None):
        self.listeners = [listener for listener in listeners if listener is not None]

    def trial_started(self, record: TrialRecord) -> None:
        for listener in self.listeners:
            listener.trial_started(record)

    def trial_result(self, record: TrialRecord, result: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener.trial_result(record, result)

    def trial_finished(self, record: TrialRecord) -> None:
        for listener in self.listeners:
            listener.trial_finished(record)
