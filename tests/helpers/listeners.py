"""A trial listener that only remembers what it heard, for tests of the Ray adapters."""
from __future__ import annotations


class RecordingListener:
    def __init__(self):
        self.started, self.results, self.finished = [], [], []

    def trial_started(self, record):
        self.started.append(record)

    def trial_result(self, record, result):
        self.results.append((record, result))

    def trial_finished(self, record):
        self.finished.append(record)
