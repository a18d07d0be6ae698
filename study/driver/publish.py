"""After the final phase: rank, write the report, put the results on MLflow, register the champion."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.ranking import Ranking, rank
from study.analysis.report import load_paper_reference, write_report
from study.analysis.tables import format_ranking_table, winner_sentence
from study.config.study import StudyConfig
from study.driver.layout import StudyLayout
from study.driver.state import StudyState
from study.errors import UserInputError
from study.tracking.tags import CHAMPION_TAG, STUDY_NAME_TAG, WINNER_TAG
from study.tracking.tracker import MlflowTracker
from study.training.evaluation import REGIONS

PAPER_SOURCE, PAPER_SIZE = "celeba", 144


def rankings_from_scores(scores: pd.DataFrame, seed: int = 0) -> dict[str, Ranking]:
    if "view" in scores:
        scores = scores[scores["view"] == "composed"].drop(columns="view")
    return {region: rank(scores[scores["region"] == region], region=region, seed=seed) for region in REGIONS
            if (scores["region"] == region).any()}


def parent_metrics(ranking: Ranking) -> dict[str, dict[str, float]]:
    """hypothesis -> {test_<region>_<metric>[_ci_low|_ci_high], rank}, for MLflow's compare view."""
    out: dict[str, dict[str, float]] = {}
    for row in ranking.summary.itertuples(index=False):
        base = f"test_{ranking.region}_{row.metric}"
        values = out.setdefault(row.hypothesis, {})
        values.update({base: row.mean, f"{base}_ci_low": row.ci_low, f"{base}_ci_high": row.ci_high})
    for row in ranking.overall.itertuples(index=False):
        out.setdefault(row.hypothesis, {})[f"rank_{ranking.region}"] = float(row.rank)
    return out


def write_study_report(layout: StudyLayout, state: StudyState, config: StudyConfig, manifest: Any,
                       lpips_available: bool) -> tuple[Path, dict[str, Ranking]]:
    """REPORT.md, figures and ranking CSVs from the stored per-image scores (no Ray, no MLflow)."""
    scores = pd.read_parquet(layout.scores)
    trials = pd.read_parquet(layout.trials) if layout.trials.exists() else pd.DataFrame()
    rankings = rankings_from_scores(scores, seed=config.search.seed)
    for region, ranking in rankings.items():
        ranking.summary.to_csv(layout.ranking_csv(region), index=False)
        ranking.mask_effect.to_csv(layout.mask_effect_csv(region), index=False)
    grids = {h: layout.grid(h) for h in scores["hypothesis"].unique()}
    paper = None
    if manifest.source == PAPER_SOURCE and manifest.image_size == PAPER_SIZE:
        paper = load_paper_reference()
    info = {
        "name": state.name, "study_id": state.study_id, "created": state.created,
        "dataset": {"source": manifest.source, "image_size": manifest.image_size, "content_hash": manifest.content_hash},
        "config": {"trials_per_hypothesis": config.search.trials_per_hypothesis, "epochs": config.train.epochs,
                   "final_seeds": config.final.seeds, "objective": config.objective.metric,
                   "mode": config.objective.mode, "scheduler": config.scheduler.kind,
                   "width": config.train.model.width},
        "lpips_available": lpips_available,
    }
    report_path = write_report(layout.root, rankings, trials, info, {h: p for h, p in grids.items() if p.exists()},
                               paper)
    return report_path, rankings


def champion_of(rankings: dict[str, Ranking]) -> str:
    full = rankings.get("full") or next(iter(rankings.values()))
    return full.overall.sort_values("rank").iloc[0]["hypothesis"]


def publish(layout: StudyLayout, state: StudyState, config: StudyConfig, manifest: Any, tracker: MlflowTracker,
            lpips_available: bool, *, quiet: bool = False) -> Path:
    """Write the report, then put test metrics, artifacts and the champion on MLflow."""
    report_path, rankings = write_study_report(layout, state, config, manifest, lpips_available)
    for ranking in rankings.values():
        for hypothesis, metrics in parent_metrics(ranking).items():
            tracker.log_values(state.parents.get(hypothesis), metrics={k: v for k, v in metrics.items() if math.isfinite(v)})
    champion = champion_of(rankings)
    for hypothesis, run_id in state.parents.items():
        tracker.log_values(run_id, tags={CHAMPION_TAG: str(hypothesis == champion).lower()})
        tracker.end_run(run_id, "FINISHED")
    full = rankings.get("full") or next(iter(rankings.values()))
    report_run = tracker.report_run({STUDY_NAME_TAG: state.name})
    tracker.log_artifacts(report_run, report_path)
    tracker.log_artifacts(report_run, layout.figures_dir, "figures")
    tracker.log_values(report_run, tags={CHAMPION_TAG: champion, WINNER_TAG: winner_sentence(full)})
    tracker.end_run(report_run, "FINISHED")
    version = None
    if config.mlflow.register_champion and state.parents.get(champion):
        if champion in state.logged_models:
            version = tracker.register_model(state.name, state.parents[champion], "model")
        else:
            print(f"warning: champion {champion} has no logged model (its upload failed); not registered. "
                  f"`maskvae study sync-mlflow {layout.root}` retries")
    if not quiet:
        print()
        print(format_ranking_table(full))
        print(f"\nreport: {report_path}")
        if version:
            print(f"champion {champion} registered as models:/{state.name}@champion (version {version})")
        print_next_steps(layout.root, state)
    return report_path


def print_next_steps(out_dir: Path, state: StudyState) -> None:
    uri = state.tracking_uri
    print("\nCompare hypotheses in the MLflow UI (parent run per hypothesis, trials nested):")
    if uri.startswith(("http://", "https://")):
        print(f"  open {uri}")
    else:
        print(f"  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000   # then open http://127.0.0.1:5000")
    print("Watch trials live in the Ray dashboard while a study runs:")
    print(f"  {state.dashboard_url or 'http://127.0.0.1:8265'}  (local Ray stops with the study; for a persistent one:"
          " `ray start --head --dashboard-host 127.0.0.1` and `maskvae study run --set ray.address=auto`)")
    print(f"Regenerate the report: maskvae study report {out_dir}")


def regenerate_report(directory: Path) -> Path:
    from data.shards import load_manifest
    from models.perceptual import lpips_available

    state = StudyState.load(directory)
    config = StudyConfig.model_validate(state.config)
    if not state.at_least("rank"):
        raise UserInputError([f"{directory}: the study is in phase '{state.phase}'; finish it with "
                              f"`maskvae study resume {directory}` first"], title="no results to report yet")
    path, rankings = write_study_report(StudyLayout(directory), state, config, load_manifest(state.data_path),
                                        lpips_available() and config.final.lpips != "off")
    print(format_ranking_table(rankings.get("full") or next(iter(rankings.values()))))
    print(f"report: {path}")
    return path
