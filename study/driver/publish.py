"""After the final phase: rank, write the report, choose the champion, then hand them to MLflow
(`mlflow_view`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from data.manifest import Manifest
from study.analysis.paper import direction_agreement, load_paper_reference, magnitudes_comparable
from study.analysis.ranking import Ranking, rank
from study.analysis.report import write_report
from study.analysis.scores import pairs_present
from study.analysis.tables import format_headline, ordered
from study.config.study import StudyConfig
from study.config.views import HEADLINE
from study.driver.layout import StudyLayout
from study.driver.mlflow_view import print_next_steps, publish_to_mlflow
from study.driver.preflight import lpips_in_study
from study.driver.state import StudyState, load_study
from study.errors import UserInputError
from study.search.trials import Phase
from study.tracking.tracker import MlflowTracker


def rankings_from_scores(scores: pd.DataFrame, seed: int = 0, n_boot: int = 2000) -> dict[tuple[str, str], Ranking]:
    """One Ranking per (view, region) in the scores, headline first; a legacy file without a `view`
    column holds composed scores."""
    return {(view, region): rank(scores, region=region, view=view, n_boot=n_boot, seed=seed)
            for view, region in pairs_present(scores)}


def _result_tables(ranking: Ranking) -> dict[str, pd.DataFrame]:
    return {"ranking": ranking.summary, "mask_effect": ranking.mask_effect, "overall": ranking.overall,
            "pareto": ranking.pareto, "factorial": ranking.factorial}




def write_study_report(layout: StudyLayout, state: StudyState, config: StudyConfig, manifest: Manifest,
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


def criterion_ranking(rankings: dict[tuple[str, str], Ranking], view: str = HEADLINE[0],
                      region: str = HEADLINE[1]) -> Ranking:
    """The ranking the champion is chosen on: (view, region), or the first available pair without it."""
    if not rankings:
        raise ValueError("no rankings to choose a champion from")
    for r in rankings.values():
        if (r.view, r.region) == (view, region):
            return r
    return ordered(rankings)[0]


def champion_of(rankings: dict[tuple[str, str], Ranking], view: str = HEADLINE[0], region: str = HEADLINE[1]) -> str:
    """Rank 1 on the overall ranking of (view, region). A tie at rank 1 goes to the higher bootstrap
    P(best), then the grid order: a champion must be one model, and the report states the tie."""
    return champion_on(criterion_ranking(rankings, view, region))


def champion_on(basis: Ranking) -> str:
    """Rank 1 on `basis`'s overall ranking, ties broken as `champion_of` says."""
    overall = basis.overall
    top = overall[overall["rank"] == overall["rank"].min()]
    return str(top.sort_values("p_best", ascending=False, kind="mergesort").iloc[0]["hypothesis"])


def publish(layout: StudyLayout, state: StudyState, config: StudyConfig, manifest: Manifest, tracker: MlflowTracker,
            lpips_available: bool, *, quiet: bool = False) -> Path:
    """Write the report, then put test metrics, artifacts and the champion on MLflow."""
    report_path, rankings = write_study_report(layout, state, config, manifest, lpips_available)
    criterion = (config.final.champion.view, config.final.champion.region)
    basis = criterion_ranking(rankings, *criterion)
    champion = champion_on(basis)
    version = publish_to_mlflow(layout, state, config, tracker, rankings, basis, champion, report_path)
    if not quiet:
        print()
        print(format_headline(rankings))
        print(f"\nreport: {report_path}")
        print_next_steps(layout.root, state, tracker, champion, version, criterion)
    return report_path


def regenerate_report(directory: Path) -> Path:
    from data.manifest import load_manifest

    state, config = load_study(directory)
    if not state.at_least(Phase.RANK):
        raise UserInputError([f"{directory}: the study is in phase '{state.phase}'; finish it with "
                              f"`maskvae study resume {directory}` first"], title="no results to report yet")
    path, rankings = write_study_report(StudyLayout(directory), state, config, load_manifest(state.data_path),
                                        lpips_in_study(config))
    print(format_headline(rankings))
    print(f"report: {path}")
    return path
