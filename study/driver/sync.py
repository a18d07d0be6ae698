"""`maskvae study sync-mlflow`: rebuild a study's MLflow view from Ray's record of it."""
from __future__ import annotations

from pathlib import Path

from study.driver.layout import StudyLayout
from study.driver.publish import publish
from study.driver.preflight import lpips_in_study
from study.driver.state import load_study
from study.orchestration import experiments
from study.search.trials import Phase
from study.tracking.listener import MlflowListener
from study.tracking.replay import replay_records
from study.tracking.store import preflight
from study.tracking.tracker import MlflowTracker


def sync_mlflow(directory: Path) -> int:
    """Replay every trial recorded in the Ray experiment directory into MLflow; existing runs are
    re-attached and only missing epochs are written, so syncing twice changes nothing."""
    from data.manifest import load_manifest

    state, config = load_study(directory)
    preflight(state.tracking_uri, config.mlflow.preflight_timeout_s)
    tracker = MlflowTracker(state.tracking_uri, state.experiment, state.study_id,
                            artifact_location=config.mlflow.artifact_location)
    manifest = load_manifest(state.data_path)
    for hypothesis in [h.name for h in config.hypotheses()]:
        state.parents[hypothesis] = tracker.hypothesis_run(hypothesis, state.parent_tags(hypothesis, manifest.content_hash))
    state.save(Path(directory))
    listener = MlflowListener(tracker, state.parents)
    replayed = 0
    for phase in experiments.PHASE_EXPERIMENTS:
        if experiments.can_restore(state.storage_path, phase):
            replayed += replay_records(listener, experiments.records(state.storage_path, phase, with_history=True))
    if state.phase == Phase.DONE:
        layout = StudyLayout(directory)
        if not state.logged_models:
            # Models are logged when the final phase is collected; a sync re-logs them from the study dir.
            for hypothesis in state.parents:
                if layout.model_dir(hypothesis).is_dir() and tracker.log_artifacts(
                        state.parents[hypothesis], layout.model_dir(hypothesis), "model"):
                    state.logged_models.append(hypothesis)
            state.save(Path(directory))
        publish(layout, state, config, manifest, tracker, lpips_in_study(config), quiet=True)
        state.save(Path(directory))  # publish records the shared MLflow view it wrote
    print(f"synced {replayed} trials of study {state.name} to {tracker.uri} (experiment {state.experiment})"
          + (" with warnings" if tracker.degraded else ""))
    return replayed
