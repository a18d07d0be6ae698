"""The trial gauges reach a real Prometheus (Debian's package) through Ray's service discovery, with
the shipped scrape config, and the shipped Grafana dashboard's queries answer."""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.prometheus import Prometheus, binary, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "cluster" / "monitoring"
OBJECTIVES = {"l2/mask": 0.25, "l2/nomask": 0.75}


def gauge_trial(config, *, flag: str):
    """A trial that reports one epoch through maskvae's own report path (which sets the gauges), then
    stays alive until the test has read Prometheus: a finished trial's actor takes its gauges along."""
    from study.orchestration.trainables import TrialContext
    from study.search.trials import Phase

    TrialContext(Phase.TUNE, config["hypothesis"]).report(
        {"epoch": 1, "val_objective": OBJECTIVES[config["hypothesis"]], "images_per_s": 123.0}, None)
    deadline = time.monotonic() + 120
    while not Path(flag).exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _panel_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana" / "maskvae-trials.json").read_text())
    return [target["expr"].replace("$phase", ".*").replace("$hypothesis", ".*")
            for panel in dashboard["panels"] for target in panel["targets"]]


def test_prometheus_reads_the_trial_objective_by_hypothesis(tmp_path):
    if binary() is None:
        pytest.skip("Debian's prometheus package is not installed (.ci/run installs it)")
    import ray
    from ray import tune

    from study.config.loading import load_study_config
    from study.orchestration import experiments
    from study.search.trials import Listeners

    # Ray's socket paths must stay short: its temp dir goes directly under /tmp.
    ray_temp = Path(tempfile.mkdtemp(prefix="mvp", dir="/tmp"))
    flag = tmp_path / "scraped"
    config = load_study_config("smoke", overrides=[
        "data.path=unused", "data.synthesize_if_missing=null", "grid.losses=[l2]", "search.trials_per_hypothesis=1",
        "train.epochs=1", "scheduler.kind=fifo", "ray.dashboard=false", "resources.reuse_actors=false"], check_data=False)
    found: dict = {}
    # The dashboard process is what writes the service-discovery file.
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=free_port(),
             _temp_dir=str(ray_temp), configure_logging=False, log_to_driver=False,
             _system_config={"metrics_report_interval_ms": 1000})
    prometheus = None
    try:
        discovery = ray_temp / "prom_metrics_service_discovery.json"
        deadline = time.monotonic() + 60
        while not discovery.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert discovery.exists(), "Ray wrote no Prometheus service-discovery file"
        prometheus = Prometheus(MONITORING / "prometheus.yml", discovery, tmp_path)
        prometheus.wait_ready()

        def read_prometheus() -> None:
            try:
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    series = prometheus.query("ray_maskvae_trial_objective")
                    if len({s["metric"].get("hypothesis") for s in series}) == len(OBJECTIVES):
                        found["series"] = series
                        found["by_hypothesis"] = prometheus.query("min by (hypothesis) (ray_maskvae_trial_objective)")
                        found["panels"] = {query: prometheus.query(query) for query in _panel_queries()}
                        return
                    time.sleep(0.5)
            finally:
                flag.touch()

        reader = threading.Thread(target=read_prometheus, daemon=True)
        reader.start()
        trainable = tune.with_parameters(gauge_trial, flag=str(flag))
        tuner = experiments.tuning_tuner(config, "unused", str(tmp_path / "ray"), Listeners(), trainable=trainable)
        records = experiments.fit(tuner, str(tmp_path / "ray"), experiments.TUNE_EXPERIMENT)
        reader.join(30)
    finally:
        flag.touch()
        if prometheus is not None:
            prometheus.stop()
        ray.shutdown()
        shutil.rmtree(ray_temp, ignore_errors=True)

    assert [r.status for r in records] == ["TERMINATED", "TERMINATED"]
    assert "series" in found, "Prometheus never saw ray_maskvae_trial_objective for both hypotheses"
    by_hypothesis = {s["metric"]["hypothesis"]: float(s["value"][1]) for s in found["by_hypothesis"]}
    assert by_hypothesis == OBJECTIVES
    for series in found["series"]:
        labels = series["metric"]
        # The trial label is Tune's trial name: "<hypothesis>#<index>:<trial id>".
        assert labels["phase"] == "tune" and labels["trial"].startswith(f"{labels['hypothesis']}#")
    for query, result in found["panels"].items():
        assert result, f"the Grafana panel query {query!r} returned nothing"
