"""After the final phase: rank, write the report, put the results on MLflow, register the champion."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from .evaluation import REGIONS
from .hypotheses import slug
from .ranking import Ranking, format_ranking_table, rank, winner_sentence
from .report import load_paper_reference, write_report
from .state import StudyState
from .study_config import StudyConfig
from .tracking import MlflowTracker

PAPER_SOURCE, PAPER_SIZE = "celeba", 144


def rankings_from_scores(scores: pd.DataFrame, seed: int = 0) -> dict[str, Ranking]:
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


def write_study_report(out_dir: Path, state: StudyState, config: StudyConfig, manifest: Any,
                       lpips_available: bool) -> tuple[Path, dict[str, Ranking]]:
    """REPORT.md, figures and ranking CSVs from the stored per-image scores (no Ray, no MLflow)."""
    scores = pd.read_parquet(out_dir / "results" / "scores.parquet")
    trials_path = out_dir / "results" / "trials.parquet"
    trials = pd.read_parquet(trials_path) if trials_path.exists() else pd.DataFrame()
    rankings = rankings_from_scores(scores, seed=config.search.seed)
    for region, ranking in rankings.items():
        ranking.summary.to_csv(out_dir / "results" / f"ranking_{region}.csv", index=False)
        ranking.mask_effect.to_csv(out_dir / "results" / f"mask_effect_{region}.csv", index=False)
    grids = {h: out_dir / "results" / "grids" / f"{slug(h)}.png" for h in scores["hypothesis"].unique()}
    paper = None
    if manifest.source == PAPER_SOURCE and manifest.image_size == PAPER_SIZE:
        paper = load_paper_reference()
    info = {
        "name": state.name, "study_id": state.study_id, "created": state.created,
        "dataset": {"source": manifest.source, "image_size": manifest.image_size, "content_hash": manifest.content_hash},
        "config": {"trials_per_hypothesis": config.search.trials_per_hypothesis, "epochs": config.train.epochs,
                   "final_seeds": config.final.seeds, "objective": config.objective.metric,
                   "scheduler": config.scheduler.kind, "width": config.model.width},
        "lpips_available": lpips_available,
    }
    report_path = write_report(out_dir, rankings, trials, info, {h: p for h, p in grids.items() if p.exists()}, paper)
    return report_path, rankings


def publish(out_dir: Path, state: StudyState, config: StudyConfig, manifest: Any, tracker: MlflowTracker,
            lpips_available: bool, *, quiet: bool = False) -> Path:
    """Write the report, then put test metrics, artifacts and the champion on MLflow."""
    report_path, rankings = write_study_report(out_dir, state, config, manifest, lpips_available)
    for region, ranking in rankings.items():
        for hypothesis, metrics in parent_metrics(ranking).items():
            tracker.log_values(state.parents.get(hypothesis), metrics={k: v for k, v in metrics.items() if math.isfinite(v)})
    full = rankings.get("full") or next(iter(rankings.values()))
    champion = full.overall.sort_values("rank").iloc[0]["hypothesis"]
    for hypothesis, run_id in state.parents.items():
        tracker.log_values(run_id, tags={"maskvae.champion": str(hypothesis == champion).lower()})
        tracker.end_run(run_id, "FINISHED")
    report_run = tracker.report_run({"maskvae.study": state.name})
    tracker.log_artifacts(report_run, report_path)
    tracker.log_artifacts(report_run, out_dir / "figures", "figures")
    tracker.log_values(report_run, tags={"maskvae.champion": champion, "maskvae.winner": winner_sentence(full)})
    tracker.end_run(report_run, "FINISHED")
    version = None
    if config.mlflow.register_champion and state.parents.get(champion):
        version = tracker.register_model(state.name, state.parents[champion], "model")

    if not quiet:
        print()
        print(format_ranking_table(full))
        print(f"\nreport: {report_path}")
        if version:
            print(f"champion {champion} registered as models:/{state.name}@champion (version {version})")
        print_next_steps(out_dir, state)
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
