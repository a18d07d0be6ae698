"""One (view, region)'s comparison of the hypotheses: seed-aware means, the mask effect, the factorial
effects, and ranks that say what the data can separate.

Every metric is lower-is-better. See `statistics` for the intervals and tests (t on a standard error
with an image part and a seed part) and `resampling` for the crossed bootstrap behind the rank
intervals, P(best) and the Pareto frequencies.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from study.analysis.effects import factorial, factorial_losses, mask_effect
from study.analysis.resampling import crossed_bootstrap, rank_stats
from study.analysis.scores import (LEGACY_VIEW, METRIC_LABELS, METRICS, REGION_TITLES, VIEW_TITLES, ScoreCube,
                                   build_cube, grid_sorted, hypothesis_name, pair_title)
from study.analysis.statistics import MIN_TEST_SEEDS, Moments, check_boot_args
from study.config.views import FULL

__all__ = ["METRICS", "METRIC_LABELS", "REGION_TITLES", "VIEW_TITLES", "Ranking", "hypothesis_name", "rank",
           "pair_title", "SUMMARY_COLUMNS", "OVERALL_COLUMNS", "PARETO_COLUMNS"]

SUMMARY_COLUMNS = ["hypothesis", "loss", "mask", "metric", "mean", "ci_low", "ci_high", "se", "df", "n_images",
                   "n_seeds", "seeds_assessed"]
OVERALL_COLUMNS = ["hypothesis", "loss", "mask", "mean_rank", "rank", "tied", "rank_low", "rank_high", "top_group",
                   "wins", "p_best", "n_seeds"]
PARETO_COLUMNS = ["hypothesis", "on_front", "p_front", "dominant", "p_dominant", "n_seeds"]
# "Dominates" is said only of a hypothesis that dominates in this share of bootstrap replicates: at
# the point means alone some hypothesis dominates in a sizeable share of studies where none differs.
DOMINANCE_LEVEL = 0.95


@dataclass
class Ranking:
    """Everything the report, the terminal and MLflow need about one (view, region)."""

    region: str
    summary: pd.DataFrame
    mask_effect: pd.DataFrame
    pareto_front: list[str]
    dominant: str | None
    overall: pd.DataFrame
    unavailable_metrics: list[str]
    n_boot: int = 0
    alpha: float = 0.05
    n_dropped_images: int = 0
    view: str = LEGACY_VIEW
    factorial: pd.DataFrame = field(default_factory=pd.DataFrame)
    pareto: pd.DataFrame = field(default_factory=pd.DataFrame)
    seed_means: pd.DataFrame = field(default_factory=pd.DataFrame)
    metric_agreement: tuple[float, float] | None = None  # min, max Spearman between metrics over hypotheses
    factorial_left_out: list[str] = field(default_factory=list)  # losses short of seeds, not in the factorial

    @property
    def key(self) -> str:
        """File-name form, e.g. ``decoder_face``."""
        return f"{self.view}_{self.region}"

    @property
    def title(self) -> str:
        return pair_title(self.view, self.region)

    @property
    def metrics(self) -> list[str]:
        """Available metrics, in METRICS order."""
        present = set(self.summary["metric"])
        return [m for m in METRICS if m in present]

    @property
    def hypotheses(self) -> list[str]:
        """Hypotheses in the paper's grid order."""
        return grid_sorted(pd.unique(self.summary["hypothesis"]))

    @property
    def n_images(self) -> int:
        return int(self.summary["n_images"].iloc[0]) if len(self.summary) else 0

    @property
    def seed_counts(self) -> list[int]:
        return sorted({int(s) for s in self.summary["n_seeds"]})

    @property
    def min_seeds(self) -> int:
        return min(self.seed_counts) if len(self.summary) else 0

    @property
    def claims_ok(self) -> bool:
        """Enough seeds for every hypothesis for model-level tests, P(best) and dominance frequencies."""
        return self.min_seeds >= MIN_TEST_SEEDS

    @property
    def short(self) -> list[str]:
        """Hypotheses with fewer than MIN_TEST_SEEDS seeds (a failed seed, or a study run with fewer)."""
        counts = self.overall.set_index("hypothesis")["n_seeds"]
        return [h for h in self.hypotheses if counts[h] < MIN_TEST_SEEDS]

    @property
    def any_claims(self) -> bool:
        """At least one hypothesis has enough seeds for its P(best) and frequencies to be shown."""
        return len(self.short) < len(self.hypotheses)

    @property
    def reliably_dominant(self) -> str | None:
        """The dominant hypothesis only when it dominates in >= DOMINANCE_LEVEL of the bootstrap
        replicates and has the seeds for that frequency to mean something."""
        if self.dominant is None or self.dominant in self.short:
            return None
        freq = float(self.pareto.set_index("hypothesis").at[self.dominant, "p_dominant"])
        return self.dominant if freq >= DOMINANCE_LEVEL else None

    @property
    def top_group(self) -> list[str]:
        """Hypotheses whose rank interval overlaps the best one's, in rank order."""
        return list(self.overall.loc[self.overall["top_group"], "hypothesis"])

    def means(self) -> pd.DataFrame:
        """Wide table: hypothesis index (grid order) x available metric columns."""
        return self._wide("mean")

    def ci(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Wide lower and upper CI bounds, shaped like means()."""
        return self._wide("ci_low"), self._wide("ci_high")

    def _wide(self, value: str) -> pd.DataFrame:
        wide = self.summary.pivot(index="hypothesis", columns="metric", values=value)
        return wide.loc[self.hypotheses, self.metrics]


def _summary(cube: ScoreCube, moments: Moments, alpha: float) -> pd.DataFrame:
    rows = []
    for k, h in enumerate(cube.hypotheses):
        w = np.zeros(len(cube.hypotheses))
        w[k] = 1.0
        c = moments.contrast(w, alpha)
        for j, m in enumerate(cube.metrics):
            rows.append({"hypothesis": h, "loss": cube.losses[h], "mask": cube.masks[h], "metric": m,
                         "mean": float(c.estimate[j]), "ci_low": float(c.ci_low[j]), "ci_high": float(c.ci_high[j]),
                         "se": float(c.se[j]), "df": float(c.df[j]), "n_images": cube.n_images,
                         "n_seeds": int(cube.n_seeds[k]), "seeds_assessed": c.seeds_assessed})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _seed_means(cube: ScoreCube, moments: Moments) -> pd.DataFrame:
    rows = [{"hypothesis": h, "seed": seed, "metric": m, "mean": float(moments.seed_means[k, s, j])}
            for k, h in enumerate(cube.hypotheses) for s, seed in enumerate(cube.seed_ids[k])
            for j, m in enumerate(cube.metrics)]
    return pd.DataFrame(rows, columns=["hypothesis", "seed", "metric", "mean"])


def _metric_agreement(point: np.ndarray) -> tuple[float, float] | None:
    if point.shape[0] < 3 or point.shape[1] < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant metric has no rank correlation
        rho = np.atleast_2d(stats.spearmanr(point).statistic)
    off = rho[~np.eye(rho.shape[0], dtype=bool)]
    off = off[np.isfinite(off)]
    return (float(off.min()), float(off.max())) if off.size else None


def rank(scores: pd.DataFrame, region: str = FULL, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
         view: str = LEGACY_VIEW) -> Ranking:
    """Compare every hypothesis on one (view, region)'s per-image test scores (a file without a
    `view` column holds composed scores).

    The overall standing is the mean over metrics of each metric's rank (ties averaged); hypotheses
    with equal mean ranks share a rank. Its bootstrap interval comes from the crossed bootstrap;
    the top group is every hypothesis whose interval overlaps the best one's.
    """
    check_boot_args(n_boot, alpha)
    return rank_cube(build_cube(scores, view, region), n_boot, alpha, seed)


def rank_cube(cube: ScoreCube, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Ranking:
    """`rank` on a cube already laid out (the simulation tests feed it cubes directly)."""
    check_boot_args(n_boot, alpha)
    region, view = cube.region, cube.view
    moments = Moments(cube.x, cube.n_seeds)
    point = moments.hyp_means
    boot = crossed_bootstrap(cube.x, cube.n_seeds, n_boot, np.random.default_rng(seed))
    rs = rank_stats(point, boot, alpha)
    hyps = cube.hypotheses
    base = pd.DataFrame({"hypothesis": hyps, "loss": [cube.losses[h] for h in hyps],
                         "mask": [cube.masks[h] for h in hyps], "n_seeds": cube.n_seeds.astype(int)})
    tied = pd.Series(rs.rank).duplicated(keep=False).to_numpy()
    overall = base.assign(mean_rank=rs.score, rank=rs.rank, tied=tied, rank_low=rs.rank_low,
                          rank_high=rs.rank_high, top_group=rs.top_group, wins=rs.wins, p_best=rs.p_best)
    # Grid order within a tie: stated as a tie wherever shown, never a silent order.
    overall = overall.sort_values("rank", kind="mergesort").reset_index(drop=True)[OVERALL_COLUMNS]
    pareto = base.assign(on_front=rs.on_front, p_front=rs.p_front, dominant=rs.dominant,
                         p_dominant=rs.p_dominant)[PARETO_COLUMNS]
    dominant = [h for h, d in zip(hyps, rs.dominant) if d]
    return Ranking(
        region=region, view=view, summary=_summary(cube, moments, alpha),
        mask_effect=mask_effect(cube, moments, alpha), factorial=factorial(cube, moments, alpha),
        pareto_front=[h for h, f in zip(hyps, rs.on_front) if f], dominant=dominant[0] if dominant else None,
        overall=overall, pareto=pareto, seed_means=_seed_means(cube, moments),
        unavailable_metrics=cube.unavailable, n_boot=int(n_boot), alpha=float(alpha), n_dropped_images=cube.n_dropped,
        metric_agreement=_metric_agreement(point), factorial_left_out=factorial_losses(cube)[1],
    )
