"""The tuning phase's Tuner on a real S3 API with the endpoint given only in the URIs' query string
(`s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http`): real Ray, searcher, Optuna and
MLflow; a stub trainable stands in for training (it still loads the dataset from the bucket)."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

from data import storage
from tests.helpers.listeners import RecordingListener

pytestmark = pytest.mark.slow


def _stub_trial(config, data_path: str) -> None:
    from ray import tune

    from data.loader import FaceData

    data = FaceData.load(data_path)  # staged from the bucket, as the real trainables do
    if config["hypothesis"] == "l2/nomask" and config["index"] == 1:
        raise RuntimeError("stub failure of l2/nomask #1")
    for epoch in (1, 2):
        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / "samples.png").write_bytes(b"\x89PNG stub")
            metrics = {"epoch": epoch, "val_objective": float(config["lr"]) + 1.0 / epoch,
                       "train_faces": float(data.size("train"))}
            if epoch == 1:
                # A key the later epochs do not report: Ray's history holds NaN for it there.
                metrics["checkpoint_note"] = "started from scratch"
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(scratch))


def test_tuning_with_the_endpoint_in_the_uri(s3, tmp_path, monkeypatch):
    from ray import tune

    from data.prepare import synthesize
    from study.config.loading import load_study_config
    from study.config.study import RayConfig
    from study.orchestration import cluster, experiments
    from study.tracking.listener import MlflowListener
    from study.tracking.replay import replay_records
    from study.tracking.tracker import MlflowTracker

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # Ray's workers inherit this environment: only the URIs know
    monkeypatch.setenv("MASKVAE_DATA_CACHE", str(tmp_path / "cache"))
    data = s3.query_uri("data/faces")
    synthesize(data, count=60, size=32, seed=0, progress=False)
    storage_path = s3.query_uri("studies/query")
    config = load_study_config("smoke", overrides=[
        f"data.path={data}", "data.synthesize_if_missing=null", "grid.losses=[l2]", "grid.masks=[true, false]",
        "search.trials_per_hypothesis=2", "train.epochs=2", "scheduler.kind=fifo", "resources.max_failures=0",
        "final.grid_faces=2", "ray.dashboard=false"])
    recorder = RecordingListener()
    cluster.start_ray(RayConfig(num_cpus=2, dashboard=False))
    try:
        trainable = tune.with_parameters(_stub_trial, data_path=data)
        tuner = experiments.tuning_tuner(config, data, storage_path, recorder, trainable=trainable)
        live = experiments.fit(tuner, storage_path, experiments.TUNE_EXPERIMENT)
    finally:
        cluster.stop_ray()

    assert any(key.startswith("studies/query/tune/") for key in s3.keys("studies/query")), "Ray wrote to the bucket"
    assert sorted(r.status for r in live) == ["ERROR", "TERMINATED", "TERMINATED", "TERMINATED"]
    for record in live:
        if record.failed:
            continue
        # Defect 2: a checkpoint is a URI that reopens on the same store (scheme and endpoint kept).
        assert record.checkpoint.startswith(f"s3://{s3.name}/studies/query/tune/")
        assert record.checkpoint.endswith(f"?endpoint_override={s3.server.host}&scheme=http")
        assert storage.Location.of(record.checkpoint).exists("samples.png")
        assert record.metrics["train_faces"] == 48
    # Defect 1: the searcher state Tune saved in the bucket is read back (it feeds optuna_trials.parquet).
    search = experiments.saved_search(storage_path)
    assert search is not None
    table = search.trials_table()
    assert sorted(row["state"] for row in table) == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]

    # No Ray session now, as in `study status`, `sync-mlflow` or a resumed driver: Ray's record in the
    # bucket is all there is.
    recorded = experiments.records(storage_path, experiments.TUNE_EXPERIMENT, with_history=True)
    failed = [r for r in recorded if r.failed]
    # Defect 6: the error text is read from storage, not from the finished session's directory.
    assert len(failed) == 1 and "stub failure of l2/nomask #1" in failed[0].error
    assert "stub failure of l2/nomask #1" in next(r for r in recorder.finished if r.failed).error

    # Defect 7: replaying history rows (NaN where an epoch did not report a key) into MLflow
    # backfills every epoch; checkpoint images come from the bucket.
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "s3-query", "study-q",
                            artifact_location=str(tmp_path / "artifacts"))
    parents = {h.name: tracker.hypothesis_run(h.name, {}) for h in config.hypotheses()}
    assert replay_records(MlflowListener(tracker, parents), recorded) == 4
    assert not tracker.degraded
    runs = tracker.client.search_runs([tracker.experiment_id], "tags.`maskvae.phase` = 'tune'")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    for run in runs:
        if run.info.status == "FAILED":
            assert "stub failure of l2/nomask #1" in run.data.tags["maskvae.error"]
            continue
        history = tracker.client.get_metric_history(run.info.run_id, "val_objective")
        assert [m.step for m in history] == [1, 2] and all(math.isfinite(m.value) for m in history)
        assert [a.path for a in tracker.client.list_artifacts(run.info.run_id)] == ["samples.png"]
        assert run.data.tags["maskvae.checkpoint_note"] == "started from scratch"
