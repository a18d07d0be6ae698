"""Each private Ray API maskvae uses (listed in study/orchestration/__init__.py), checked by name
without starting Ray: when a Ray release moves one, the test named for it fails, not a cluster run.
The behaviour behind each is exercised end to end in tests/test_orchestration.py and the study tests."""
from __future__ import annotations

import importlib
import inspect


def test_ray_private_rayparams_takes_the_dashboard_agent_port_and_ray_init_looks_it_up_at_call_time():
    """cluster._agent_port swaps `ray._private.parameter.RayParams` during `ray.init`."""
    from ray._private import parameter, worker

    assert "dashboard_agent_listen_port" in inspect.signature(parameter.RayParams.__init__).parameters
    assert "ray._private.parameter.RayParams(" in inspect.getsource(worker.init)


def test_ray_private_authentication_modules_are_where_cluster_reads_them():
    """cluster.token_hint asks `is_token_auth_enabled`; cluster quiets the token-setup logger by name."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled
    from study.orchestration.cluster import _TOKEN_LOGGER

    assert callable(is_token_auth_enabled)
    importlib.import_module(_TOKEN_LOGGER)


def test_ray_private_local_tuner_run_config_holds_the_callbacks(tmp_path):
    """experiments.reattach_callbacks writes `tuner._local_tuner._run_config.callbacks`."""
    from ray import tune
    from ray.tune.impl.tuner_internal import TunerInternal

    tuner = tune.Tuner(lambda config: None, run_config=tune.RunConfig(name="x", storage_path=str(tmp_path)))
    run_config = tuner._local_tuner._run_config
    assert isinstance(tuner._local_tuner, TunerInternal) and hasattr(run_config, "callbacks")
    assert "self._run_config.callbacks" in inspect.getsource(TunerInternal)


def test_ray_private_trial_info_names_the_trial_an_actor_runs():
    """trainables.trial_actor_class's repr reads `Trainable._trial_info.trial_name`."""
    from ray.tune.experiment.trial import _TrialInfo
    from ray.tune.trainable import Trainable

    assert "self._trial_info = trial_info" in inspect.getsource(Trainable.__init__)
    assert isinstance(inspect.getattr_static(_TrialInfo, "trial_name"), property)
