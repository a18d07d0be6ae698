"""MlflowTracker against a real local SQLite store."""
from __future__ import annotations

import sqlite3

import pytest

from study.tracking.tracker import MlflowTracker


@pytest.fixture()
def tracker(tmp_path) -> MlflowTracker:
    warnings: list[str] = []
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking-test", "study-1", warn=warnings.append)
    tracker.warnings = warnings  # type: ignore[attr-defined]
    return tracker


def test_sqlite_store_is_switched_to_write_ahead_logging(tmp_path, tracker):
    parent = tracker.hypothesis_run("l2/mask", {})
    assert parent is not None
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not tracker.warnings


def test_epochs_are_written_once_per_step_and_reattached_runs_remember_them(tracker):
    parent = tracker.hypothesis_run("l2/mask", {})
    run = tracker.child_run(parent, "l2/mask", "tune:1", "trial", {"lr": 1e-3}, {})
    assert tracker.log_epoch(run, {"epoch": 1.0, "val_objective": 0.5, "note": "text", "bad": float("nan")}, 1)
    assert not tracker.log_epoch(run, {"epoch": 1.0, "val_objective": 0.4}, 1)  # a retried attempt's repeat
    assert tracker.log_epoch(run, {"epoch": 2.0, "val_objective": 0.3}, 2)
    history = tracker.client.get_metric_history(run, "val_objective")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.3)]
    assert "bad" not in tracker.client.get_run(run).data.metrics
    assert tracker.client.get_run(run).data.params == {"lr": "0.001"}

    # A new tracker (a resumed driver) finds the run by its trial key and skips the steps it holds.
    again = MlflowTracker(tracker.uri, tracker.experiment_name, tracker.study_id, warn=tracker.warn)
    assert again.child_run(parent, "l2/mask", "tune:1", "trial", {"lr": 1e-3}, {}) == run
    assert not again.log_epoch(run, {"epoch": 2.0, "val_objective": 0.9}, 2)
    assert again.log_epoch(run, {"epoch": 3.0, "val_objective": 0.2}, 3)
    assert [m.step for m in again.client.get_metric_history(run, "val_objective")] == [1, 2, 3]


def test_an_error_without_a_message_degrades_tracking_instead_of_crashing(tracker, monkeypatch):
    parent = tracker.hypothesis_run("l2/mask", {})
    run = tracker.child_run(parent, "l2/mask", "tune:1", "trial", {}, {})

    def silent_failure(*args, **kwargs):
        raise TimeoutError()

    monkeypatch.setattr(tracker.client, "log_batch", silent_failure)
    assert not tracker.log_epoch(run, {"epoch": 1.0, "val_objective": 0.5}, 1)
    assert tracker.degraded and "TimeoutError" in tracker.warnings[-1]


def test_replay_leaves_live_finished_trials_alone_and_keeps_the_attempt(tracker):
    from study.search.trials import TrialRecord
    from study.tracking.listener import MlflowListener
    from study.tracking.replay import replay_records
    from tests.helpers.mlflow_runs import study_runs

    listener = MlflowListener(tracker, {"l2/mask": tracker.hypothesis_run("l2/mask", {})})
    config = {"hypothesis": "l2/mask", "kl_weight": 1e-3, "lr": 1e-3}

    def record(trial_id: str, attempts: int, status: str = "TERMINATED", history=()) -> TrialRecord:
        return TrialRecord(phase="tune", trial_id=trial_id, config=config, status=status, metrics={"epoch": 1},
                           attempts=attempts, history=history)

    listener.trial_started(record("a", 2, "RUNNING"))
    listener.trial_result(record("a", 2, "RUNNING"), {"epoch": 1, "val_objective": 0.5})
    listener.trial_finished(record("a", 2))

    history = ({"epoch": 1, "val_objective": 0.4},)
    assert replay_records(listener, [record("a", 1, history=history), record("b", 3, history=history)]) == 1
    runs = {r.data.tags["maskvae.trial_key"]: r for r in study_runs(tracker) if "maskvae.trial_key" in r.data.tags}
    assert runs["tune:a"].data.tags["maskvae.attempt"] == "2" and runs["tune:a"].data.metrics["val_objective"] == 0.5
    assert runs["tune:b"].data.tags["maskvae.attempt"] == "3" and runs["tune:b"].info.status == "FINISHED"
    # sync: idempotent
    assert replay_records(MlflowListener(tracker, listener.parents), [record("b", 3, history=history)]) == 1
    assert len(study_runs(tracker)) == len(runs) + 1


def test_replay_ends_failed_and_lost_trials_with_their_recorded_status(tracker):
    from study.search.trials import TrialRecord
    from study.tracking.listener import MlflowListener
    from study.tracking.replay import replay_records
    from tests.helpers.mlflow_runs import study_runs

    listener = MlflowListener(tracker, {"l1/nomask": tracker.hypothesis_run("l1/nomask", {})})
    config = {"hypothesis": "l1/nomask", "kl_weight": 1e-3, "lr": 1e-3}
    records = [
        TrialRecord("tune", "crashed", config, "ERROR", {"epoch": 1}, error="Traceback...\nValueError: boom",
                    history=({"epoch": 1, "val_objective": 0.7},)),
        TrialRecord("tune", "nan", config, "TERMINATED", {"epoch": 1, "failure": "loss became NaN"},
                    error="loss became NaN"),
        TrialRecord("tune", "lost", config, "RUNNING", {"epoch": 1}),
    ]
    assert replay_records(listener, records) == 3
    runs = {r.data.tags["maskvae.trial_id"]: r for r in study_runs(tracker) if "maskvae.trial_id" in r.data.tags}
    assert runs["crashed"].info.status == "FAILED" and "ValueError: boom" in runs["crashed"].data.tags["maskvae.error"]
    assert runs["crashed"].data.metrics["val_objective"] == 0.7
    assert runs["nan"].info.status == "FAILED" and runs["lost"].info.status == "KILLED"


def test_new_trial_runs_cost_no_search(tracker, monkeypatch):
    """The driver's hot path: a study's trial runs are looked up once per tracker, not once per trial."""
    parent = tracker.hypothesis_run("l2/mask", {})
    searches = []
    real_search = tracker.client.search_runs
    monkeypatch.setattr(tracker.client, "search_runs", lambda *a, **k: searches.append(a) or real_search(*a, **k))
    runs = [tracker.child_run(parent, "l2/mask", f"tune:{i}", f"trial {i}", {}, {}) for i in range(30)]
    assert len(set(runs)) == 30 and len(searches) == 1
    tracker.end_run(runs[3], "FINISHED")
    # Re-attaching (a retried trial) finds the run without searching and marks it RUNNING again.
    assert tracker.child_run(parent, "l2/mask", "tune:3", "trial 3", {}, {}) == runs[3]
    assert len(searches) == 1 and tracker.client.get_run(runs[3]).info.status == "RUNNING"


def test_each_study_claims_its_own_experiment_and_model_name(tmp_path):
    from study.tracking.naming import claim_names
    from study.tracking.store import client_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert claim_names(uri, "smoke", "id-a", "20250101-120000") == ("smoke", "smoke")
    # Claiming again (a resume) keeps the name; another study moves on to its start time.
    assert claim_names(uri, "smoke", "id-a", "20250101-120000") == ("smoke", "smoke")
    assert claim_names(uri, "smoke", "id-b", "20250101-130000") == ("smoke-20250101-130000",) * 2
    client = client_for(uri)
    assert client.get_experiment_by_name("smoke-20250101-130000").tags["maskvae.study_id"] == "id-b"
    # A registered model of that name from elsewhere is not taken over either.
    client.create_registered_model("other", tags={"maskvae.study_id": "id-z"})
    assert claim_names(uri, "other", "id-c", "20250101-140000") == ("other-20250101-140000",) * 2
    # A chosen experiment is shared as asked; the model name is still the study's own.
    assert claim_names(uri, "smoke", "id-d", "20250101-150000", "shared") == ("shared", "smoke-20250101-150000")
    assert claim_names(uri, "smoke", "id-e", "20250101-160000", "shared") == ("shared", "smoke-20250101-160000")


def test_the_champion_version_describes_what_won_and_stays_one_version(tracker, tmp_path):
    parent = tracker.hypothesis_run("ssim/mask", {})
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    assert tracker.log_artifacts(parent, model, "model")
    kwargs = dict(hypothesis="ssim/mask", study="smoke", view="decoder", region="face", criterion="overall rank",
                  detail="Dominant hypothesis: ssim/mask")
    assert tracker.register_champion("smoke", parent, "model", **kwargs) == "1"
    assert tracker.register_champion("smoke", parent, "model", **kwargs) == "1"  # re-publishing adds no version
    version = tracker.client.get_model_version_by_alias("smoke", "champion")
    assert "ssim/mask ranks first on the decoder view, face region, by overall rank" in version.description
    assert "Dominant hypothesis: ssim/mask." in version.description and "study-1" in version.description
    assert version.tags["maskvae.region"] == "face" and version.tags["maskvae.study_id"] == "study-1"
    assert not tracker.warnings


def test_the_printed_link_opens_this_studys_hypotheses_ranked_in_chart_view():
    from urllib.parse import parse_qs, urlsplit

    from study.tracking.links import hypotheses_link

    link = hypotheses_link("http://127.0.0.1:5000", "7", "abc123", "face/rank")
    fragment = urlsplit(link).fragment
    path, _, query = fragment.partition("?")
    values = {k: v[0] for k, v in parse_qs(query).items()}
    assert path == "/experiments/7/runs"
    assert values["searchFilter"] == "tags.`maskvae.role` = 'hypothesis' and tags.`maskvae.study_id` = 'abc123'"
    assert values["orderByKey"] == "metrics.`face/rank`" and values["orderByAsc"] == "true"
    assert values["compareRunsMode"] == "CHART" and values["workflowType"] == "machine_learning"


def test_the_link_to_a_saved_view_carries_no_search_settings_of_its_own():
    import json
    from urllib.parse import parse_qs, urlsplit

    from study.tracking.links import hypotheses_link, hypotheses_view

    key, state = hypotheses_view("abc123", "full/rank", ["params.`lr`"])
    assert json.loads(state)["selectedColumns"] == ["params.`lr`"] and json.loads(state)["orderByAsc"] is True
    query = parse_qs(urlsplit(hypotheses_link("http://h:5000", "7", "abc123", "full/rank", view_key=key)).fragment
                     .partition("?")[2])
    # MLflow ignores a shared view when the URL has its own filter or order.
    assert set(query) == {"viewStateShareKey", "compareRunsMode", "workflowType"} and query["viewStateShareKey"] == [key]


def test_a_claimed_experiment_keeps_its_artifacts_where_the_config_says(tmp_path):
    from study.tracking.naming import claim_names
    from study.tracking.store import client_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = (tmp_path / "elsewhere").as_uri()
    experiment, _ = claim_names(uri, "smoke", "id-a", "20250101-120000", artifact_location=artifacts)
    assert client_for(uri).get_experiment_by_name(experiment).artifact_location == artifacts
