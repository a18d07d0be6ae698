"""Turning each phase's records into the study directory's results: the trials table, and the final
runs' per-image scores, grids and representative models."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from data import storage
from study.driver.layout import StudyLayout
from study.driver.state import StudyState
from study.search.selection import representative_runs
from study.search.trials import TrialRecord
from study.tracking.tracker import MlflowTracker
from study.training.final_run import RUN_GRID_FILE, RUN_GRID_ROWS_FILE, RUN_MODEL_DIR, RUN_SCORES_FILE
from study.training.images import load_rows, save_combined_grid


def write_trials(layout: StudyLayout, records: list[TrialRecord], metric: str) -> None:
    rows = [{
        "hypothesis": r.hypothesis, "trial_id": r.trial_id, "kl_weight": r.config.get("kl_weight"),
        "lr": r.config.get("lr"), "objective": r.value(metric), "epochs": r.metrics.get("epoch"),
        "status": "FAILED" if r.failed else r.status, "error": r.error, "node_id": r.metrics.get("node_id"),
    } for r in records]
    layout.results_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame.from_records(rows).to_parquet(layout.trials, index=False)


def _local_copy(location: str, destination: Path) -> Path:
    return storage.Location.of(location).download(destination)


def collect_final(layout: StudyLayout, records: list[TrialRecord], tracker: MlflowTracker, state: StudyState,
                  hypotheses: list[str]) -> None:
    """Per-image scores of every successful seed; each hypothesis's first successful seed provides
    its grid and its published model (logged to its MLflow run; the champion comes from these)."""
    frames = []
    grid_rows = {}
    representatives = representative_runs(records)
    state.logged_models = []
    for record in sorted(records, key=lambda r: (r.hypothesis, r.seed if r.seed is not None else -1)):
        if record.failed or not record.checkpoint:
            print(f"warning: final run {record.hypothesis} seed {record.seed} failed: {record.error}")
            continue
        local = _local_copy(record.checkpoint, layout.fetch_dir / record.trial_id)
        frames.append(pd.read_parquet(local / RUN_SCORES_FILE))
        if representatives.get(record.hypothesis) is not record:
            continue
        target = layout.model_dir(record.hypothesis)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(local / RUN_MODEL_DIR, target)
        layout.grids_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local / RUN_GRID_FILE, layout.grid(record.hypothesis))
        if (local / RUN_GRID_ROWS_FILE).is_file():
            grid_rows[record.hypothesis] = load_rows(local / RUN_GRID_ROWS_FILE)
        if tracker.log_artifacts(state.parents.get(record.hypothesis), target, "model"):
            state.logged_models.append(record.hypothesis)
    shutil.rmtree(layout.fetch_dir, ignore_errors=True)
    if grid_rows:
        order = [h for h in hypotheses if h in grid_rows] + [h for h in grid_rows if h not in hypotheses]
        save_combined_grid({h: grid_rows[h] for h in order}, layout.combined_grid)
    if not frames:
        raise RuntimeError("every final run failed: nothing to rank")
    pd.concat(frames, ignore_index=True).to_parquet(layout.scores, index=False)
