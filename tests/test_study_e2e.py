"""End to end on real local Ray, real Optuna and real MLflow (SQLite): a small smoke study."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

HYPOTHESES = ["l2/mask", "l2/nomask", "ssim/mask", "ssim/nomask"]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, synthetic_dataset):
    from study.driver.run import run_study
    from study.config.loading import load_study_config

    root = tmp_path_factory.mktemp("study")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    overrides = [
        f"data.path={synthetic_dataset}", "data.synthesize_if_missing=null", "grid.losses=[l2, ssim]",
        "search.trials_per_hypothesis=2", "train.epochs=2", "train.max_train_batches=3", "train.max_val_batches=2",
        "final.seeds=2", "final.grid_faces=4", f"mlflow.tracking_uri={tracking}", "ray.num_cpus=2",
        "ray.dashboard=false", "name=e2e-study",
    ]
    config = load_study_config("smoke", overrides=overrides)
    out = root / "run"
    run_study(config, out)
    return out, tracking, config


def _client(tracking):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking)


def test_every_hypothesis_got_the_same_number_of_trials(finished_study):
    out, _, config = finished_study
    trials = pd.read_parquet(out / "results" / "trials.parquet")
    assert trials.groupby("hypothesis").size().to_dict() == {h: 2 for h in HYPOTHESES}
    assert (trials["status"] == "TERMINATED").all()
    state = json.loads((out / "study.json").read_text())
    assert state["phase"] == "done" and set(state["best"]) == set(HYPOTHESES)


def test_each_optuna_study_saw_only_its_own_hypothesis(finished_study):
    out, _, _ = finished_study
    trials = pd.read_parquet(out / "results" / "trials.parquet").set_index("trial_id")
    optuna_trials = pd.read_parquet(out / "results" / "optuna_trials.parquet")
    assert optuna_trials.groupby("hypothesis").size().to_dict() == {h: 2 for h in HYPOTHESES}
    for row in optuna_trials.itertuples():
        assert trials.loc[row.ray_trial_id, "hypothesis"] == row.hypothesis
        assert math.isclose(trials.loc[row.ray_trial_id, "lr"], row.lr)
        assert row.state == "COMPLETE"


def test_mlflow_holds_the_full_run_tree(finished_study):
    out, tracking, _ = finished_study
    client = _client(tracking)
    experiment = client.get_experiment_by_name("e2e-study")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens the runs table
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert all(run.info.status in ("FINISHED", "FAILED", "KILLED") for run in runs)
    parents = {r.data.tags["maskvae.hypothesis"]: r for r in runs if r.data.tags.get("maskvae.role") == "hypothesis"}
    assert set(parents) == set(HYPOTHESES)
    for hypothesis, parent in parents.items():
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        phases = sorted(r.data.tags["maskvae.phase"] for r in children)
        assert phases == ["final", "final", "tune", "tune"], hypothesis
        assert all(r.info.status == "FINISHED" for r in children)
        for child in children:
            history = client.get_metric_history(child.info.run_id, "val_objective")
            assert [m.step for m in history] == sorted({m.step for m in history}) and len(history) >= 1
        for section in ("decoder face", "paper: composed full"):
            assert math.isfinite(parent.data.metrics[f"{section}/1-SSIM"])
            assert parent.data.tags[f"maskvae.ci.{section}/10 l2"].endswith("(95%)")
        assert not [name for name in parent.data.metrics if "ci" in name.lower()]
        assert parent.data.tags["maskvae.loss"] == hypothesis.split("/")[0]
        assert "maskvae.dataset_hash" in parent.data.tags and "maskvae.version.torch" in parent.data.tags
    version = client.get_model_version_by_alias("e2e-study", "champion")
    champion = [h for h, p in parents.items() if p.info.run_id == version.run_id]
    assert len(champion) == 1 and parents[champion[0]].data.tags["maskvae.champion"] == "true"


def test_hypothesis_runs_carry_the_tuned_params_and_a_dozen_headline_metrics(finished_study):
    out, tracking, _ = finished_study
    client = _client(tracking)
    state = json.loads((out / "study.json").read_text())
    experiment = client.get_experiment_by_name(state["experiment"])
    assert experiment.tags["maskvae.study_id"] == state["study_id"]  # the study's own experiment
    parents = client.search_runs([experiment.experiment_id], "tags.`maskvae.role` = 'hypothesis'")
    assert len(parents) == len(HYPOTHESES)
    for parent in parents:
        best = state["best"][parent.data.tags["maskvae.hypothesis"]]
        params = parent.data.params
        assert float(params["kl_weight"]) == pytest.approx(best["kl_weight"]) and float(params["lr"]) == pytest.approx(best["lr"])
        assert params["best_trial"] == best["trial_id"] and params["epochs"] == "2"
        metrics = parent.data.metrics
        # Six metrics (five without LPIPS weights) and a rank for the headline (decoder face) and the
        # paper's protocol (composed full): about a dozen charts; CI bounds are tags, not charts.
        assert 12 <= len(metrics) <= 14 and not any("ci" in key.lower() for key in metrics)
        assert all(key.split("/")[0] in ("decoder face", "paper: composed full") for key in metrics)
        ranks = {metrics["decoder face/rank"], metrics["paper: composed full/rank"]}
        assert ranks <= {float(r) for r in range(1, len(HYPOTHESES) + 1)}
    # The printed link's saved view: this study's hypothesis runs, by rank, with params and metrics as columns.
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{state['hypotheses_view']}"])
    assert len(client.search_runs([experiment.experiment_id], view["searchFilter"])) == len(HYPOTHESES)
    assert view["orderByKey"] == "metrics.`decoder face/rank`" and "params.`lr`" in view["selectedColumns"]


def test_the_champion_version_says_what_won_and_where(finished_study):
    out, tracking, _ = finished_study
    client = _client(tracking)
    state = json.loads((out / "study.json").read_text())
    version = client.get_model_version_by_alias(state["model_name"], "champion")
    champion = version.tags["maskvae.hypothesis"]
    ranking = pd.read_csv(out / "results" / f"ranking_{version.tags['maskvae.view']}_{version.tags['maskvae.region']}.csv")
    assert (version.tags["maskvae.view"], version.tags["maskvae.region"]) == ("decoder", "face")  # the default criterion
    assert champion in set(ranking["hypothesis"])
    assert version.tags["maskvae.study_id"] == state["study_id"]
    description = version.description
    assert champion in description and "e2e-study" in description and state["study_id"] in description
    assert f"{version.tags['maskvae.view']} view" in description and f"{version.tags['maskvae.region']} region" in description
    assert "overall rank" in description


def test_report_and_ranking_list_every_hypothesis_with_finite_values(finished_study):
    out, _, _ = finished_study
    report = (out / "REPORT.md").read_text()
    for hypothesis in HYPOTHESES:
        assert hypothesis in report
    assert (out / "figures" / "metrics_composed_full.png").exists()
    scores = pd.read_parquet(out / "results" / "scores.parquet")
    assert set(scores["region"]) == {"full", "face"} and set(scores["seed"]) == {1, 2}
    ranking = pd.read_csv(out / "results" / "ranking_composed_full.csv")
    assert set(ranking["hypothesis"]) == set(HYPOTHESES)
    finite = ranking[ranking["metric"] != "lpips"]["mean"]
    assert finite.map(math.isfinite).all()


def test_resume_of_a_finished_study_is_a_no_op(finished_study, capsys):
    out, tracking, _ = finished_study
    from study.driver.run import resume_study

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    runs_before = len(_client(tracking).search_runs([_client(tracking).get_experiment_by_name("e2e-study").experiment_id]))
    resume_study(out)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert before == after
    client = _client(tracking)
    assert len(client.search_runs([client.get_experiment_by_name("e2e-study").experiment_id])) == runs_before
    assert "already complete" in capsys.readouterr().out


def test_predict_with_the_registered_champion(finished_study, tmp_path):
    out, tracking, _ = finished_study
    from PIL import Image

    from study.cli import main

    face = tmp_path / "face.png"
    Image.new("RGB", (50, 60), (200, 150, 120)).save(face)
    assert main(["predict", "--model", "models:/e2e-study@champion", str(face), "--out", str(tmp_path / "pred"),
                 "--tracking-uri", tracking]) == 0
    reconstruction = Image.open(tmp_path / "pred" / "face_reconstruction.png")
    assert reconstruction.size == (32, 32)


def test_status_and_report_regeneration(finished_study, capsys):
    out, _, _ = finished_study
    from study.cli import main

    assert main(["study", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "phase done" in text and "l2/mask" in text and "2/2" in text
    (out / "REPORT.md").unlink()
    assert main(["study", "report", str(out)]) == 0
    assert (out / "REPORT.md").exists()
