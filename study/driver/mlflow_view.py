"""The study's results as MLflow shows them: the hypothesis runs' params, metrics and CI tags, the
report run, the champion's registered version, the shared runs view, and the links that open them."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from study.analysis.ranking import METRIC_LABELS, Ranking
from study.analysis.tables import winner_sentence
from study.config.study import StudyConfig
from study.config.views import HEADLINE, PAPER, PARENT_METRIC_PAIRS
from study.driver.commands import command
from study.driver.layout import StudyLayout
from study.driver.state import StudyState
from study.search.selection import BestConfig
from study.tracking.links import (absolute_store_uri, column, hypotheses_link, hypotheses_view, model_version_link,
                                  ui_base)
from study.tracking.tags import CHAMPION_TAG, CI_TAG_PREFIX, STUDY_NAME_TAG, WINNER_TAG
from study.tracking.tracker import MlflowTracker

CHAMPION_CRITERION = "overall rank"


def section(view: str, region: str) -> str:
    """The chart-view section of a (view, region). MLflow orders sections alphabetically: the paper's
    protocol is named so that the headline (decoder face) comes first."""
    name = f"{view} {region}"
    return f"paper: {name}" if (view, region) == PAPER else name


def _section(ranking: Ranking) -> str:
    return section(ranking.view, ranking.region)


def headline_key(ranking: Ranking, metric: str) -> str:
    """A parent run's metric name, e.g. `decoder face/1-SSIM`: MLflow's chart view groups charts by the
    part before the slash (one section per view and region) and the short label keeps titles readable."""
    # MLflow metric names take letters, digits, "_-. /:" only: the middle dot of "10·l1" becomes a space.
    return f"{_section(ranking)}/{METRIC_LABELS.get(metric, metric).replace('·', ' ')}"


def rank_key(region: str, view: str) -> str:
    return f"{section(view, region)}/rank"


def parent_metrics(ranking: Ranking) -> dict[str, dict[str, float]]:
    """hypothesis -> {<view> <region>/<metric>: mean, <view> <region>/rank}: the headline numbers, one
    chart each in MLflow's chart view (the CI bounds go to tags, `parent_ci_tags`)."""
    out: dict[str, dict[str, float]] = {}
    for row in ranking.summary.itertuples(index=False):
        out.setdefault(row.hypothesis, {})[headline_key(ranking, row.metric)] = row.mean
    for row in ranking.overall.itertuples(index=False):
        out.setdefault(row.hypothesis, {})[rank_key(ranking.region, ranking.view)] = float(row.rank)
    return out


def parent_ci_tags(ranking: Ranking) -> dict[str, dict[str, str]]:
    """hypothesis -> {maskvae.ci.<region>/<metric>: "low .. high (95%)"}: each mean's bootstrap CI, on
    the run page and in Compare, without two more charts per metric."""
    out: dict[str, dict[str, str]] = {}
    level = f"{100 * (1 - ranking.alpha):.0f}%"
    for row in ranking.summary.itertuples(index=False):
        if math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
            out.setdefault(row.hypothesis, {})[f"{CI_TAG_PREFIX}{headline_key(ranking, row.metric)}"] = \
                f"{row.ci_low:.4g} .. {row.ci_high:.4g} ({level})"
    return out


def parent_params(best: BestConfig, config: StudyConfig) -> dict[str, Any]:
    """The tuned settings a hypothesis's final runs trained with, and the trial that chose them."""
    return {"kl_weight": best.kl_weight, "lr": best.lr, "epochs": config.final.epochs or config.train.epochs,
            "best_trial": best.trial_id, "best_trial_objective": best.objective}


def publish_to_mlflow(layout: StudyLayout, state: StudyState, config: StudyConfig, tracker: MlflowTracker,
                      rankings: dict[tuple[str, str], Ranking], basis: Ranking, champion: str,
                      report_path: Path) -> str | None:
    """Parent runs get params, headline metrics and CI tags; the report run the report; the champion
    (rank 1 on `basis`, the champion criterion's ranking) its registered version. Returns the
    champion's version, when registered."""
    for ranking in _on_parent_runs(rankings, basis):
        cis = parent_ci_tags(ranking)
        for hypothesis, metrics in parent_metrics(ranking).items():
            tracker.log_values(state.parents.get(hypothesis), metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
                               tags=cis.get(hypothesis))
    for hypothesis, run_id in state.parents.items():
        params = parent_params(state.best[hypothesis], config) if hypothesis in state.best else None
        tracker.log_values(run_id, tags={CHAMPION_TAG: str(hypothesis == champion).lower()}, params=params)
        tracker.end_run(run_id, "FINISHED")
    report_run = tracker.report_run({STUDY_NAME_TAG: state.name})
    tracker.log_artifacts(report_run, report_path)
    tracker.log_artifacts(report_run, layout.figures_dir, "figures")
    for ranking in rankings.values():
        tracker.log_artifacts(report_run, layout.result_table("ranking", ranking.key), "tables")
    tracker.log_values(report_run, tags={CHAMPION_TAG: champion, WINNER_TAG: winner_sentence(basis)})
    tracker.end_run(report_run, "FINISHED")
    _share_hypotheses_view(state, tracker, rankings, basis)
    if not (config.mlflow.register_champion and state.parents.get(champion)):
        return None
    if champion not in state.logged_models:
        print(f"warning: champion {champion} has no logged model (its upload failed); not registered. "
              f"`maskvae study sync-mlflow {layout.root}` retries")
        return None
    return tracker.register_champion(state.model_name or state.name, state.parents[champion], "model",
                                     hypothesis=champion, study=state.name, view=basis.view, region=basis.region,
                                     criterion=CHAMPION_CRITERION, detail=winner_sentence(basis))


def _on_parent_runs(rankings: dict[tuple[str, str], Ranking], basis: Ranking) -> list[Ranking]:
    """The rankings whose numbers go on the hypothesis runs: the headline pairs and the champion's."""
    return [r for r in rankings.values() if r is basis or (r.view, r.region) in PARENT_METRIC_PAIRS]


def _share_hypotheses_view(state: StudyState, tracker: MlflowTracker, rankings: dict[tuple[str, str], Ranking],
                           basis: Ranking) -> None:
    """The runs table of the printed link: ranks, tuned params, then the champion criterion's metrics."""
    columns = [column("metrics", rank_key(r.region, r.view)) for r in _on_parent_runs(rankings, basis)]
    columns += [column("params", p) for p in ("kl_weight", "lr", "epochs", "best_trial")]
    measured = set(basis.summary.loc[basis.summary["mean"].map(math.isfinite), "metric"])
    columns += [column("metrics", headline_key(basis, metric)) for metric in basis.metrics if metric in measured]
    key, view = hypotheses_view(state.study_id, rank_key(basis.region, basis.view), columns)
    if tracker.share_view(key, view):
        state.hypotheses_view = key


def print_next_steps(out_dir: Path, state: StudyState, tracker: MlflowTracker | None = None,
                     champion: str | None = None, version: str | None = None,
                     criterion: tuple[str, str] = HEADLINE) -> None:
    """The commands and links that open this study's results, runnable as printed."""
    uri = absolute_store_uri(state.tracking_uri)
    ui = ui_base(uri)
    model = state.model_name or state.name
    print(f"\nMLflow: this study's runs are in experiment '{state.experiment}'.")
    if not uri.startswith(("http://", "https://")):
        print(f"  start the UI:  {command('mlflow')} ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
    experiment_id = tracker.experiment_id_or_none() if tracker is not None else None
    if experiment_id:
        print("  compare the hypotheses (best rank first, one chart per test metric; the table icon lists their params):")
        link = hypotheses_link(ui, experiment_id, state.study_id, rank_key(criterion[1], criterion[0]),
                               view_key=state.hypotheses_view or None)
        print(f"    {link}")
    if version and champion:
        print(f"  champion {champion}: models:/{model}@champion (version {version}), "
              f"{model_version_link(ui, model, version)}")
    print(f"Ray dashboard: local Ray stops with the study; to keep one up, `{command('ray')} start --head "
          "--dashboard-host 127.0.0.1` and run studies with `--set ray.address=auto`.")
    print(f"Regenerate the report: {command('maskvae')} study report {out_dir}")
