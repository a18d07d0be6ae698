"""What the driver hears about trials, independent of Ray: tracking and progress both listen."""
from __future__ import annotations

from typing import Any, Protocol

PHASES = ("tune", "final")


class TrialListener(Protocol):
    def trial_started(self, phase: str, trial_id: str, config: dict[str, Any], attempt: int) -> None: ...

    def trial_result(self, phase: str, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None: ...

    def trial_finished(self, phase: str, trial_id: str, config: dict[str, Any], status: str,
                       error: str | None, result: dict[str, Any] | None, checkpoint: str | None) -> None: ...


class Listeners:
    """Fan one event out to several listeners."""

    def __init__(self, *listeners: TrialListener):
        self.listeners = [listener for listener in listeners if listener is not None]

    def trial_started(self, *args, **kwargs) -> None:
        for listener in self.listeners:
            listener.trial_started(*args, **kwargs)

    def trial_result(self, *args, **kwargs) -> None:
        for listener in self.listeners:
            listener.trial_result(*args, **kwargs)

    def trial_finished(self, *args, **kwargs) -> None:
        for listener in self.listeners:
            listener.trial_finished(*args, **kwargs)
