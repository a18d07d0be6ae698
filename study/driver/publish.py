"""After the final phase: rank, write the report, put the results on MLflow, register the champion."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.paper import direction_agreement, load_paper_reference, magnitudes_comparable
from study.analysis.ranking import Ranking, rank
from study.analysis.report import write_report
from study.analysis.scores import pairs_present
from study.analysis.tables import format_headline, ordered, winner_sentence
from study.config.study import StudyConfig
from study.driver.layout import StudyLayout
from study.driver.state import StudyState
from study.errors import UserInputError
from study.tracking.tags import CHAMPION_TAG, STUDY_NAME_TAG, WINNER_TAG
from study.tracking.tracker import MlflowTracker

def rankings_from_scores(scores: pd.DataFrame, seed: int = 0, n_boot: int = 2000) -> dict[tuple[str, str], Ranking]:
    """One Ranking per (view, region) in the scores, headline first; a legacy file without a `view`
    column holds composed scores."""
    return {(view, region): rank(scores, region=region, view=view, n_boot=n_boot, seed=seed)
            for view, region in pairs_present(scores)}


def _result_tables(ranking: Ranking) -> dict[str, pd.DataFrame]:
    return {"ranking": ranking.summary, "mask_effect": ranking.mask_effect, "overall": ranking.overall,
            "pareto": ranking.pareto, "factorial": ranking.factorial}


def parent_metrics(ranking: Ranking) -> dict[str, dict[str, float]]:
    """hypothesis -> {test_<view>_<region>_<metric>[_ci_low|_ci_high], rank_<view>_<region>}."""
    out: dict[str, dict[str, float]] = {}
    for row in ranking.summary.itertuples(index=False):
        base = f"test_{ranking.key}_{row.metric}"
        values = out.setdefault(row.hypothesis, {})
        values.update({base: row.mean, f"{base}_ci_low": row.ci_low, f"{base}_ci_high": row.ci_high})
    for row in ranking.overall.itertuples(index=False):
        out.setdefault(row.hypothesis, {})[f"rank_{ranking.key}"] = float(row.rank)
    return out


def write_study_report(layout: StudyLayout, state: StudyState, config: StudyConfig, manifest: Any,
                       lpips_available: bool) -> tuple[Path, dict[tuple[str, str], Ranking]]:
    """REPORT.md, figures and result CSVs from the stored per-image scores (no Ray, no MLflow)."""
    scores = pd.read_parquet(layout.scores)
    trials = pd.read_parquet(layout.trials) if layout.trials.exists() else pd.DataFrame()
    rankings = rankings_from_scores(scores, seed=config.search.seed)
    paper = load_paper_reference()
    layout.results_dir.mkdir(parents=True, exist_ok=True)
    for ranking in rankings.values():
        for table, frame in _result_tables(ranking).items():
            frame.to_csv(layout.result_table(table, ranking.key), index=False)
    pd.concat([direction_agreement(r, paper) for r in ordered(rankings)], ignore_index=True).to_csv(
        layout.paper_direction, index=False)
    grids = {h: layout.grid(h) for h in scores["hypothesis"].unique()}
    combined = layout.combined_grid
    info = {
        "name": state.name, "study_id": state.study_id, "created": state.created,
        "dataset": {"source": manifest.source, "image_size": manifest.image_size, "content_hash": manifest.content_hash},
        "config": {"trials_per_hypothesis": config.search.trials_per_hypothesis, "epochs": config.train.epochs,
                   "final_seeds": config.final.seeds, "objective": config.objective.metric,
                   "mode": config.objective.mode, "scheduler": config.scheduler.kind,
                   "width": config.train.model.width},
        "lpips_available": lpips_available,
        "tuning_note": (f"Tuning was paired across hypotheses: every hypothesis first tried the same "
                        f"{min(config.search.startup_trials, config.search.trials_per_hypothesis)} start-up "
                        f"configurations, drawn once from search.seed={config.search.seed} (common random numbers)."),
    }
    report_path = write_report(layout.root, rankings, trials, info, {h: p for h, p in grids.items() if p.exists()},
                               paper, combined_grid=combined if combined.is_file() else None,
                               paper_magnitudes=magnitudes_comparable(manifest.source, manifest.image_size))
    return report_path, rankings


def criterion_ranking(rankings: dict[tuple[str, str], Ranking], view: str = "decoder",
                      region: str = "face") -> Ranking:
    """The ranking the champion is chosen on: (view, region), or the first available pair without it."""
    if not rankings:
        raise ValueError("no rankings to choose a champion from")
    for r in rankings.values():
        if (r.view, r.region) == (view, region):
            return r
    return ordered(rankings)[0]


def champion_of(rankings: dict[tuple[str, str], Ranking], view: str = "decoder", region: str = "face") -> str:
    """Rank 1 on the overall ranking of (view, region). A tie at rank 1 goes to the higher bootstrap
    P(best), then the grid order: a champion must be one model, and the report states the tie."""
    overall = criterion_ranking(rankings, view, region).overall
    top = overall[overall["rank"] == overall["rank"].min()]
    return str(top.sort_values("p_best", ascending=False, kind="mergesort").iloc[0]["hypothesis"])


def publish(layout: StudyLayout, state: StudyState, config: StudyConfig, manifest: Any, tracker: MlflowTracker,
            lpips_available: bool, *, quiet: bool = False) -> Path:
    """Write the report, then put test metrics, artifacts and the champion on MLflow."""
    report_path, rankings = write_study_report(layout, state, config, manifest, lpips_available)
    for ranking in rankings.values():
        for hypothesis, metrics in parent_metrics(ranking).items():
            tracker.log_values(state.parents.get(hypothesis), metrics={k: v for k, v in metrics.items() if math.isfinite(v)})
    criterion = (config.final.champion.view, config.final.champion.region)
    champion = champion_of(rankings, *criterion)
    for hypothesis, run_id in state.parents.items():
        tracker.log_values(run_id, tags={CHAMPION_TAG: str(hypothesis == champion).lower()})
        tracker.end_run(run_id, "FINISHED")
    report_run = tracker.report_run({STUDY_NAME_TAG: state.name})
    tracker.log_artifacts(report_run, report_path)
    tracker.log_artifacts(report_run, layout.figures_dir, "figures")
    tracker.log_values(report_run, tags={CHAMPION_TAG: champion, WINNER_TAG: winner_sentence(criterion_ranking(rankings, *criterion))})
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
        print(format_headline(rankings))
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
    from data.manifest import load_manifest
    from models.perceptual import lpips_available

    state = StudyState.load(directory)
    config = StudyConfig.model_validate(state.config)
    if not state.at_least("rank"):
        raise UserInputError([f"{directory}: the study is in phase '{state.phase}'; finish it with "
                              f"`maskvae study resume {directory}` first"], title="no results to report yet")
    path, rankings = write_study_report(StudyLayout(directory), state, config, load_manifest(state.data_path),
                                        lpips_available() and config.final.lpips != "off")
    print(format_headline(rankings))
    print(f"report: {path}")
    return path
