"""Ray-facing adapters against a real local Ray, and the two private writes maskvae makes to Ray (a
restored tuner's callbacks, the dashboard agent's port)."""
from __future__ import annotations

from pathlib import Path

import pytest


def _fails_once(config):
    from ray import tune

    marker = Path(config["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("first attempt fails")
    tune.report({"score": 1.0})


@pytest.mark.slow
def test_a_restored_tuner_reports_to_the_listeners_it_is_given_back(tmp_path):
    """Callbacks are not restored with a Tuner; `reattach_callbacks` gives them back through Ray's
    private state. If a Ray release moves that state this test fails (loudly, by name)."""
    import ray
    from ray import tune

    from study.orchestration.callbacks import ListenerCallback
    from study.orchestration.experiments import reattach_callbacks
    from tests.helpers.listeners import RecordingListener

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        storage = str(tmp_path / "storage")
        tuner = tune.Tuner(_fails_once, param_space={"marker": str(tmp_path / "marker")},
                           run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0))
        assert tuner.fit().errors
        restored = tune.Tuner.restore(f"{storage}/exp", _fails_once, resume_errored=True)
        recorder = RecordingListener()
        reattach_callbacks(restored, [ListenerCallback("tune", recorder, storage)])
        restored.fit()
    finally:
        ray.shutdown()
    assert [r.status for r in recorder.finished] == ["TERMINATED"]
    assert recorder.finished[0].mlflow_status == "FINISHED" and recorder.finished[0].metrics["score"] == 1.0


def test_checkpoint_pruner_waits_for_snapshots_that_record_the_trial_as_ended(tmp_path):
    """Older checkpoints of an ended trial go only `LAG` snapshots after the one that records it as
    ended, so a resume from a stored snapshot never looks for them."""
    from types import SimpleNamespace

    from study.orchestration.callbacks import CheckpointPruner

    trial_dir = tmp_path / "tune" / "l1-mask-abc"
    for index in range(4):
        (trial_dir / f"checkpoint_{index:06d}").mkdir(parents=True)
        (trial_dir / f"checkpoint_{index:06d}" / "checkpoint.pt").write_text("x")
    pruner = CheckpointPruner(str(tmp_path), keep=2)
    pruner.on_trial_complete(0, [], SimpleNamespace(path=str(trial_dir)))
    checkpoints = lambda: sorted(p.name for p in trial_dir.glob("checkpoint_*"))  # noqa: E731
    assert pruner.get_state() is None and len(checkpoints()) == 4  # the snapshot that records it ended
    for _ in range(CheckpointPruner.LAG - 1):
        pruner.get_state()
        assert len(checkpoints()) == 4  # the snapshot that records it may still be uploading
    pruner.get_state()
    assert checkpoints() == ["checkpoint_000002", "checkpoint_000003"]


def test_trials_return_their_slot_on_a_shared_cluster_and_reuse_actors_on_local_ray(monkeypatch):
    """On a cluster joined by address or as a Ray job, other studies may wait for slots: a reused
    actor would keep its slot from one trial to the next. Local Ray is this study's alone."""
    from study.config.study import StudyConfig
    from study.orchestration.cluster import reuse_actors

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local = StudyConfig.model_validate({"data": {"path": "/x"}})
    joined = StudyConfig.model_validate({"data": {"path": "/x"}, "ray": {"address": "127.0.0.1:6379"}})
    assert reuse_actors(local) and not reuse_actors(joined)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # how a Ray job's driver finds its cluster
    assert not reuse_actors(local)
    pinned = StudyConfig.model_validate({"data": {"path": "/x"}, "resources": {"reuse_actors": True}})
    assert reuse_actors(pinned)


def test_two_drivers_on_one_host_start_their_experiments_in_different_seconds():
    """Tune names an experiment's staging directory by its start second: a second driver waits at
    the gate until the first one's experiment is set up and that second has passed."""
    import datetime
    import threading

    from study.orchestration.startgate import STAMP, StartGate

    first, second = StartGate(), StartGate()
    first.acquire()
    started_first = datetime.datetime.now().strftime(STAMP)
    entered = []
    waiter = threading.Thread(target=lambda: (second.acquire(), entered.append(datetime.datetime.now().strftime(STAMP))))
    waiter.start()
    waiter.join(0.3)
    assert not entered, "the second driver waits while the first one's experiment starts"
    first.setup()  # what Tune calls once the experiment exists
    waiter.join(5)
    second.release()
    assert entered and entered[0] > started_first


def test_a_final_experiment_whose_trials_lost_their_settings_is_not_restored(tmp_path):
    """A driver killed as the final phase began once left a snapshot whose trial had no run settings:
    restoring it failed every retry (KeyError 'run'). Such an experiment is recognised and discarded."""
    import ray
    from ray import tune

    from study.orchestration.experiments import FINAL_EXPERIMENT, discard, final_runs_intact

    def noop(config):
        tune.report({"score": 1.0})

    storage = str(tmp_path / "storage")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        tune.Tuner(noop, param_space={"x": 1},
                   run_config=tune.RunConfig(name=FINAL_EXPERIMENT, storage_path=storage, verbose=0)).fit()
        assert not final_runs_intact(storage)  # trials without their run's hypothesis and seed
        discard(storage, FINAL_EXPERIMENT)
        assert not (tmp_path / "storage" / FINAL_EXPERIMENT).exists()
        tune.Tuner(noop, param_space={"hypothesis": "l1/mask", "seed": 1},
                   run_config=tune.RunConfig(name=FINAL_EXPERIMENT, storage_path=storage, verbose=0)).fit()
        assert final_runs_intact(storage)
    finally:
        ray.shutdown()


def test_the_dashboard_agent_port_override_reaches_ray_while_the_default_is_taken():
    """`cluster._agent_port` is the one write to Ray's private `RayParams`: fail by name if a Ray
    release stops building its parameters through it or renames the field."""
    import inspect
    import socket

    from ray._private import parameter, worker

    from study.orchestration import cluster

    assert "ray._private.parameter.RayParams(" in inspect.getsource(worker.init), \
        "ray.init no longer builds RayParams through the module attribute _agent_port replaces"
    assert "dashboard_agent_listen_port" in inspect.signature(parameter.RayParams.__init__).parameters
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("", cluster.DEFAULT_AGENT_PORT))
        except OSError:
            pass  # already taken by someone else: just as good
        original = parameter.RayParams
        with cluster._agent_port(dashboard=True):
            params = parameter.RayParams()
        assert parameter.RayParams is original, "the original class is put back"
    assert params.dashboard_agent_listen_port not in (None, cluster.DEFAULT_AGENT_PORT)
    assert original().dashboard_agent_listen_port in (None, cluster.DEFAULT_AGENT_PORT)
