"""What every benchmark shares: result rows with targets, interleaved timing, the machine's description."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NO_GPU = "no GPU"
_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}


@dataclass(frozen=True)
class Target:
    """`on` (ratio or value) must be `op` `threshold`."""

    op: str
    threshold: float
    on: str = "ratio"

    def __post_init__(self) -> None:
        if self.op not in _COMPARE:
            raise ValueError(f"op: expected one of {sorted(_COMPARE)}, got {self.op!r}")
        if self.on not in ("ratio", "value"):
            raise ValueError(f"on: expected 'ratio' or 'value', got {self.on!r}")

    def met(self, row: Row) -> bool | None:
        measured = row.ratio if self.on == "ratio" else row.value
        if measured is None:
            return None
        # Rounded first: a Spearman rho of exactly 0.8 computes as 0.7999999999999999.
        return _COMPARE[self.op](round(float(measured), 9), self.threshold)

    def describe(self) -> str:
        suffix = "x" if self.on == "ratio" else ""
        return f"{self.op} {self.threshold:g}{suffix}"


@dataclass
class Row:
    """One claim: maskvae's number, the baseline's number from the same run, and their ratio."""

    benchmark: str
    measure: str
    unit: str
    value: float | None
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    ratio: float | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = self.target.describe() if self.target else None
        out["met"] = self.met
        return out


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def skipped(benchmark: str, measure: str, unit: str, target: Target, reason: str = NO_GPU) -> Row:
    """A row that could not run here (e.g. no GPU): no numbers, the reason as its note."""
    return Row(benchmark, measure, unit, None, target=target, note=reason)


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each run once per round, alternating, so background load hits every side alike."""
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats!r}")
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(float(run()))
    return samples


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(values: list[float], baselines: list[float]) -> float:
    """Median over rounds of value/baseline: each round's two samples ran back to back, so a load
    spike from other processes hits both sides of a pair rather than one side of the medians."""
    if len(values) != len(baselines) or not values:
        raise ValueError(f"expected as many samples as baselines, got {len(values)} and {len(baselines)}")
    return median([v / b for v, b in zip(values, baselines)])


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Stopwatch:
    """Seconds since the last `lap()` (or creation): wall time, or with `cpu` this process's CPU time
    (what one core spends on the work, whatever else the machine runs)."""

    def __init__(self, cpu: bool = False) -> None:
        self._clock = time.process_time if cpu else time.perf_counter
        self._start = self._clock()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def lap(self) -> float:
        now = self._clock()
        elapsed, self._start = now - self._start, now
        return elapsed


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_version() -> str:
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5)
        return result.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "code": _git_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info
