"""Every Ray import in maskvae (Ray's API moves between releases; one adapter keeps the blast radius
small): the cluster connection, the worker-side trainables, the searcher and scheduler adapters,
the driver's callback, and the experiments (tuners, restore, records).

Ray's private API, used where no public one does the job; each use is guarded by a test that fails by
name when a Ray release moves it (tests/test_ray_private.py), and pyproject.toml bounds Ray above to
the releases those tests passed on (2.60):
- `ray._private.parameter.RayParams`, swapped during `ray.init` to give the dashboard agent a free
  port (cluster._agent_port); test_ray_private_rayparams_takes_the_dashboard_agent_port_...
- `ray._private.authentication`: whether token auth is on, and the token-setup logger maskvae quiets
  (cluster.token_hint, cluster._TOKEN_LOGGER); test_ray_private_authentication_modules_are_where_...
- `Tuner._local_tuner._run_config.callbacks`, written to give a restored tuner its callbacks back
  (experiments.reattach_callbacks); test_ray_private_local_tuner_run_config_holds_the_callbacks
- `Trainable._trial_info`, read for the actor's repr on the dashboard (trainables.trial_actor_class);
  test_ray_private_trial_info_names_the_trial_an_actor_runs
"""
