"""Reading back what a study wrote to MLflow (the tracker itself never needs to list its runs)."""
from __future__ import annotations

from typing import Any

from study.tracking.tags import STUDY_TAG


def study_runs(tracker) -> list[Any]:
    return tracker.client.search_runs([tracker.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{tracker.study_id}'",
                                      max_results=10000)
