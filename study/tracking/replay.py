"""Replaying Ray's record of a study into MLflow (resume, `study sync-mlflow`)."""
from __future__ import annotations

from collections.abc import Iterable

from study.search.trials import TrialRecord
from study.tracking.listener import MlflowListener


def replay_records(listener: MlflowListener, records: Iterable[TrialRecord]) -> int:
    """Replay recorded trials (read with their history) into `listener`: runs are re-attached, missing
    epochs written, and every run ends with the status Ray recorded. Trials the listener already saw
    finish live are left as they are. Returns how many trials were replayed."""
    replayed = 0
    for record in records:
        if listener.has_finished(record.phase, record.trial_id):
            continue
        listener.trial_started(record)
        for result in record.history:
            listener.trial_result(record, dict(result))
        listener.trial_finished(record)
        replayed += 1
    return replayed
