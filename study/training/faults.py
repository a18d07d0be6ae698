"""Fault injection for the reliability tests ("failpoints"), off unless MASKVAE_FAULTS is set.

MASKVAE_FAULTS holds a JSON list of rules. A rule fires at a named point when every key it shares
with the point's context matches, e.g.
    [{"point": "epoch_start", "hypothesis": "l2/nomask", "index": 0, "action": "raise"}]
Every action is in `ACTIONS` below, with what it does. `once` names a marker file: the rule fires
only if the file does not exist yet, and creates it. Ray workers inherit the variable from the
driver, so the tests exercise real processes without touching production behaviour.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

ENV = "MASKVAE_FAULTS"
# The registry: every action a rule may name. Actions the point's caller carries out itself are
# marked "(caller)"; the caller passes a handler for them to `fire`.
ACTIONS = {
    "raise": "raise InjectedFault at the point",
    "exit": "end the process at once (os._exit(137)), as a SIGKILL would",
    "sleep": "sleep `seconds` (default 1) and go on",
    "wait": "block until the file `path` exists (at most `seconds`, default 600), then go on",
    "nan": "(caller) the trainer makes this epoch's loss NaN",
    "corrupt_and_exit": "(caller) the trainable truncates its newest persisted checkpoint, then exits like 'exit'",
}
# Where rules can fire (and the context keys each adds besides phase/hypothesis/index/seed).
POINTS = {"epoch_start": ("epoch",), "after_report": ("epoch",)}
_context: dict[str, Any] = {}


class InjectedFault(RuntimeError):
    pass


def set_context(**values: Any) -> None:
    """Identity of the running trial (hypothesis, index, phase), merged into every check."""
    _context.clear()
    _context.update(values)


def _rules() -> list[dict[str, Any]]:
    text = os.environ.get(ENV)
    rules = json.loads(text) if text else []
    for rule in rules:
        if rule.get("action") not in ACTIONS or rule.get("point") not in POINTS:
            raise ValueError(f"{ENV}: rule {rule} names an unknown point or action "
                             f"(points: {sorted(POINTS)}; actions: {sorted(ACTIONS)})")
    return rules


def _matches(rule: dict[str, Any], point: str, context: dict[str, Any]) -> bool:
    if rule.get("point") != point:
        return False
    reserved = {"point", "action", "once", "seconds", "path"}
    return all(context.get(key) == value for key, value in rule.items() if key not in reserved)


def _wait_for(path: Path, timeout: float) -> None:
    # A gate a test opens once every process it coordinates has reached its point.
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def fire(point: str, handlers: dict[str, Callable[[], None]] | None = None, **values: Any) -> str | None:
    """Run the first matching rule's action; returns the action name. A "(caller)" action runs the
    caller's handler when given one, else is left to the caller by the returned name."""
    rules = _rules()
    if not rules:
        return None
    context = {**_context, **values}
    for rule in rules:
        if not _matches(rule, point, context):
            continue
        once = rule.get("once")
        if once:
            marker = Path(once)
            if marker.exists():
                continue
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps(context, default=str))
        action = rule.get("action")
        if action == "raise":
            raise InjectedFault(f"injected fault at {point} ({context})")
        if action == "exit":
            os._exit(137)
        if action == "sleep":
            time.sleep(float(rule.get("seconds", 1.0)))
        if action == "wait":
            _wait_for(Path(rule["path"]), float(rule.get("seconds", 600.0)))
        if handlers and action in handlers:
            handlers[action]()
        return action
    return None
