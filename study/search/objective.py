"""The one "better" rule: every choice of a best trial, run or hypothesis goes through here, so
`objective.mode: max` is honoured everywhere alike."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")
MODES = ("min", "max")


def finite_or_none(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None (NaN, Inf, missing, text, flags)."""
    if isinstance(value, (bool, str)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def better(candidate: Any, incumbent: Any, mode: str) -> bool:
    """Whether `candidate` beats `incumbent` under `mode`; a non-finite value never beats anything,
    and anything finite beats a missing incumbent. Ties keep the incumbent (the earlier one)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    new, old = finite_or_none(candidate), finite_or_none(incumbent)
    if new is None:
        return False
    if old is None:
        return True
    return new < old if mode == "min" else new > old


def best(items: Iterable[T], value_of, mode: str) -> T | None:
    """The first best item by `value_of(item)`, or None when no item has a finite value."""
    winner, winner_value = None, None
    for item in items:
        value = value_of(item)
        if better(value, winner_value, mode):
            winner, winner_value = item, value
    return winner
