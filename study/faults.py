"""Fault injection for the reliability tests ("failpoints"), off unless MASKVAE_FAULTS is set.

MASKVAE_FAULTS holds a JSON list of rules. A rule fires at a named point when every key it shares
with the point's context matches, e.g.
    [{"point": "epoch_start", "hypothesis": "l2/nomask", "index": 0, "action": "raise"}]
Actions: "raise" (an exception), "exit" (the process dies at once, like SIGKILL), "sleep"
(`seconds`), "nan" (the caller makes its loss NaN). `once` names a marker file: the rule fires
only if the file does not exist yet, and creates it. Ray workers inherit the variable from the
driver, so the tests exercise real processes without touching production behaviour.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ENV = "MASKVAE_FAULTS"
_context: dict[str, Any] = {}


class InjectedFault(RuntimeError):
    pass


def set_context(**values: Any) -> None:
    """Identity of the running trial (hypothesis, index, phase), merged into every check."""
    _context.clear()
    _context.update(values)


def _rules() -> list[dict[str, Any]]:
    text = os.environ.get(ENV)
    return json.loads(text) if text else []


def _matches(rule: dict[str, Any], point: str, context: dict[str, Any]) -> bool:
    if rule.get("point") != point:
        return False
    reserved = {"point", "action", "once", "seconds"}
    return all(context.get(key) == value for key, value in rule.items() if key not in reserved)


def fire(point: str, **values: Any) -> str | None:
    """Run the first matching rule's action; returns the action name ("nan" is left to the caller)."""
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
        return action
    return None
