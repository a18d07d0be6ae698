"""Read-only views of a study directory (status, report) and the MLflow backfill."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .state import StudyState
from .study_config import StudyConfig


def _load(directory: Path) -> tuple[StudyState, StudyConfig]:
    state = StudyState.load(directory)
    return state, StudyConfig.model_validate(state.config)


def print_status(directory: Path) -> dict[str, dict[str, Counter]]:
    from . import ray_backend

    state, config = _load(directory)
    print(f"study {state.name} ({state.study_id}) in {directory}: phase {state.phase}")
    summary: dict[str, dict[str, Counter]] = {}
    for phase in (ray_backend.TUNE_EXPERIMENT, ray_backend.FINAL_EXPERIMENT):
        if not ray_backend.can_restore(state.storage_path, phase):
            continue
        counts: dict[str, Counter] = defaultdict(Counter)
        best: dict[str, float] = {}
        for row in ray_backend.results(state.storage_path, phase):
            hypothesis = row["config"].get("hypothesis", "?")
            counts[hypothesis][row["status"]] += 1
            value = row["metrics"].get(config.objective.metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                best[hypothesis] = min(best.get(hypothesis, math.inf), value)
        planned = config.search.trials_per_hypothesis if phase == "tune" else config.final.seeds
        print(f"{phase}:")
        for hypothesis in [h.name for h in config.hypotheses()]:
            tally = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts[hypothesis].items())) or "not started"
            extra = f"  best {config.objective.metric} {best[hypothesis]:.4f}" if hypothesis in best else ""
            print(f"  {hypothesis:<14} {sum(counts[hypothesis].values())}/{planned}: {tally}{extra}")
        summary[phase] = dict(counts)
    if state.phase == "done":
        print(f"report: {Path(directory) / 'REPORT.md'}")
    else:
        print(f"resume with: maskvae study resume {directory}")
    return summary


def regenerate_report(directory: Path) -> Path:
    from data.shards import load_manifest
    from models.perceptual import lpips_available

    from .errors import UserInputError
    from .ranking import format_ranking_table
    from .reporting import write_study_report

    state, config = _load(directory)
    if not state.at_least("rank"):
        raise UserInputError([f"{directory}: the study is in phase '{state.phase}'; finish it with "
                              f"`maskvae study resume {directory}` first"], title="no results to report yet")
    path, rankings = write_study_report(Path(directory), state, config, load_manifest(state.data_path),
                                        lpips_available() and config.final.lpips != "off")
    print(format_ranking_table(rankings.get("full") or next(iter(rankings.values()))))
    print(f"report: {path}")
    return path


def replay_phase(listener, phase: str, rows: list[dict[str, Any]]) -> int:
    """Replay one experiment's recorded trials (`ray_backend.results(..., with_history=True)`) into
    `listener`: runs are re-attached, missing epochs written, and every run ends with the status Ray
    recorded. Trials the listener already saw finish live are left as they are. Returns how many
    trials were replayed."""
    replayed = 0
    for row in rows:
        if listener.has_finished(phase, row["trial_id"]):
            continue
        listener.trial_started(phase, row["trial_id"], row["config"], row["attempts"])
        for result in row["history"]:
            listener.trial_result(phase, row["trial_id"], row["config"], result)
        failure = row["error"]
        status = "FAILED" if failure else {"TERMINATED": "FINISHED", "ERROR": "FAILED"}.get(row["status"], "KILLED")
        checkpoint = row["checkpoint"].path if row["checkpoint"] is not None else None
        listener.trial_finished(phase, row["trial_id"], row["config"], status, failure, row["metrics"], checkpoint)
        replayed += 1
    return replayed


def sync_mlflow(directory: Path) -> int:
    """Replay every trial recorded in the Ray experiment directory into MLflow; existing runs are
    re-attached and only missing epochs are written, so syncing twice changes nothing."""
    from data.shards import load_manifest
    from models.perceptual import lpips_available

    from . import ray_backend
    from .listeners import MlflowListener
    from .reporting import publish
    from .runner import _parent_tags
    from .tracking import MlflowTracker, preflight

    state, config = _load(directory)
    preflight(state.tracking_uri, config.mlflow.preflight_timeout_s)
    tracker = MlflowTracker(state.tracking_uri, state.experiment, state.study_id)
    manifest = load_manifest(state.data_path)
    for hypothesis in [h.name for h in config.hypotheses()]:
        state.parents[hypothesis] = tracker.hypothesis_run(hypothesis, _parent_tags(state, hypothesis, manifest.content_hash))
    state.save(Path(directory))
    listener = MlflowListener(tracker, state.parents)
    replayed = 0
    for phase in (ray_backend.TUNE_EXPERIMENT, ray_backend.FINAL_EXPERIMENT):
        if ray_backend.can_restore(state.storage_path, phase):
            replayed += replay_phase(listener, phase, ray_backend.results(state.storage_path, phase, with_history=True))
    if state.phase == "done":
        publish(Path(directory), state, config, manifest, tracker, lpips_available() and config.final.lpips != "off",
                quiet=True)
    print(f"synced {replayed} trials of study {state.name} to {tracker.uri} (experiment {state.experiment})"
          + (" with warnings" if tracker.degraded else ""))
    return replayed
