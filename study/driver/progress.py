"""What the terminal shows while a study runs: one line per finished trial, with the hypothesis's
tally, its best value so far (by the objective's own mode), elapsed time and an ETA."""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from study.search.objective import better, finite_or_none
from study.search.trials import TrialRecord


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressPrinter:
    def __init__(self, totals: dict[str, int], metric: str, mode: str, *, now=time.monotonic):
        self.totals = totals
        self.metric = metric
        self.mode = mode
        self.now = now
        self.started: dict[str, float] = {}
        self.done: dict[tuple[str, str], int] = defaultdict(int)
        self.best: dict[tuple[str, str], float] = {}
        self.noted: set[tuple[str, str]] = set()

    def trial_started(self, record: TrialRecord) -> None:
        self.started.setdefault(record.phase, self.now())
        if record.attempts > 1:
            print(f"  [{record.phase}] {record.hypothesis} {record.trial_id}: retrying (attempt {record.attempts}) "
                  "from its last checkpoint", flush=True)

    def trial_result(self, record: TrialRecord, result: dict[str, Any]) -> None:
        note = result.get("checkpoint_note")
        if note and (record.phase, record.trial_id) not in self.noted:
            self.noted.add((record.phase, record.trial_id))
            print(f"  [{record.phase}] {record.hypothesis} {record.trial_id}: {note}", flush=True)

    def trial_finished(self, record: TrialRecord) -> None:
        phase, hypothesis = record.phase, record.hypothesis
        key = (phase, hypothesis)
        self.done[key] += 1
        value = record.value(self.metric)
        if better(value, self.best.get(key), self.mode):
            self.best[key] = value
        total = self.totals.get(f"{phase}:{hypothesis}", 0)
        overall = sum(n for (p, _), n in self.done.items() if p == phase)
        overall_total = sum(n for k, n in self.totals.items() if k.startswith(f"{phase}:"))
        if record.failed:
            what = f"FAILED: {(record.error or '').strip().splitlines()[-1][:120] if record.error else ''}"
        else:
            shown = finite_or_none(record.metrics.get(self.metric))
            what = f"{self.metric} {shown:.4f}" if shown is not None else "no result"
        best = self.best.get(key)
        print(f"  [{phase} {overall:>3}/{overall_total}] {hypothesis:<14} {self.done[key]}/{total} "
              f"({record.epochs} ep) {what}" + (f"  best {best:.4f}" if best is not None else "")
              + self._timing(phase, overall, overall_total), flush=True)

    def _timing(self, phase: str, done: int, total: int) -> str:
        if phase not in self.started:
            return ""
        elapsed = self.now() - self.started[phase]
        text = f"  [{clock(elapsed)} elapsed"
        if 0 < done < total:
            text += f", ETA {clock(elapsed / done * (total - done))}"
        return text + "]"
