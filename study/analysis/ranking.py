"""Paired statistics over per-image test scores: CIs, mask effect, Pareto dominance, overall rank.

Every metric is lower-is-better. Hypotheses are compared on the same test images (paired), so
the bootstrap resamples image ids once per replicate and applies them to every hypothesis.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from study.config.hypotheses import Hypothesis
from study.analysis.statistics import (bootstrap_mean_ci, check_boot_args, crossed_bootstrap, dominant_hypothesis,
                                      holm, paired_p_value, pareto_front)

METRICS: tuple[str, ...] = (
    "one_minus_ssim",
    "one_minus_ms_ssim",
    "lpips",
    "one_minus_vif",
    "l1_x10",
    "l2_x10",
)
METRIC_LABELS: dict[str, str] = {
    "one_minus_ssim": "1-SSIM",
    "one_minus_ms_ssim": "1-MS-SSIM",
    "lpips": "LPIPS",
    "one_minus_vif": "1-VIF",
    "l1_x10": "10·l1",
    "l2_x10": "10·l2",
}
REGION_TITLES = {
    "full": "full output",
    "face": "face region only (ground-truth mask)",
}
ID_COLUMNS: tuple[str, ...] = ("hypothesis", "loss", "mask", "seed", "image_id", "region")

SUMMARY_COLUMNS = ["hypothesis", "loss", "mask", "metric", "mean", "ci_low", "ci_high", "n_images", "n_seeds"]
MASK_EFFECT_COLUMNS = ["loss", "metric", "diff", "ci_low", "ci_high", "p_value", "p_holm", "better"]
OVERALL_COLUMNS = ["hypothesis", "mean_rank", "rank", "wins", "prob_best"]



@dataclass
class Ranking:
    """Everything the report and the CLI need about one region's comparison."""

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

    @property
    def metrics(self) -> list[str]:
        """Available metrics, in METRICS order."""
        present = set(self.summary["metric"])
        return [m for m in METRICS if m in present]

    @property
    def hypotheses(self) -> list[str]:
        """Hypotheses in the order they first appear in the scores."""
        return list(pd.unique(self.summary["hypothesis"]))

    def means(self) -> pd.DataFrame:
        """Wide table: hypothesis index x available metric columns."""
        return self._wide("mean")

    def ci(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Wide lower and upper CI bounds, shaped like means()."""
        return self._wide("ci_low"), self._wide("ci_high")

    def _wide(self, value: str) -> pd.DataFrame:
        wide = self.summary.pivot(index="hypothesis", columns="metric", values=value)
        return wide.loc[self.hypotheses, self.metrics]


def hypothesis_name(loss: str, mask: bool) -> str:
    """The study's hypothesis name, e.g. ``ssim+l2/mask``."""
    return Hypothesis(loss, bool(mask)).name


def _as_bool(col: pd.Series) -> pd.Series:
    # astype(bool) would read the string "false" as True.
    if pd.api.types.is_bool_dtype(col):
        return col.astype(bool)
    mapping = {"true": True, "false": False, "1": True, "0": False}
    text = col.astype(str).str.strip().str.lower()
    bad = ~text.isin(list(mapping))
    if bad.any():
        raise ValueError(f"scores: column 'mask' must be boolean, got {col[bad].iloc[0]!r}")
    return text.map(mapping).astype(bool)


def _validate(scores: pd.DataFrame, region: str) -> pd.DataFrame:
    missing = [c for c in (*ID_COLUMNS, *METRICS) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores: missing column(s) {missing}")
    df = scores[scores["region"] == region]
    if df.empty:
        present = sorted(map(str, pd.unique(scores["region"])))
        raise ValueError(f"scores: no rows for region {region!r} (regions present: {present})")
    df = df.copy()
    for m in METRICS:
        try:
            df[m] = df[m].astype(float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scores: metric column {m!r} is not numeric: {exc}") from exc
    df["image_id"] = df["image_id"].astype(str)
    df["hypothesis"] = df["hypothesis"].astype(str)
    df["loss"] = df["loss"].astype(str)
    df["mask"] = _as_bool(df["mask"])
    pairs = df.groupby("hypothesis", sort=False)[["loss", "mask"]].nunique()
    ambiguous = pairs.index[(pairs > 1).any(axis=1)].tolist()
    if ambiguous:
        raise ValueError(f"scores: hypothesis {ambiguous} maps to more than one (loss, mask)")
    dup = df.duplicated(["hypothesis", "seed", "image_id"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(
            f"scores: duplicate row for hypothesis {row['hypothesis']!r}, seed {row['seed']}, "
            f"image {row['image_id']!r} in region {region!r}"
        )
    return df


def _split_metrics(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    available, unavailable = [], []
    for m in METRICS:
        if df[m].isna().all():
            unavailable.append(m)
            continue
        per_hyp = df.groupby("hypothesis", sort=False)[m].apply(lambda s: s.isna().all())
        if per_hyp.any():
            raise ValueError(
                f"scores: metric {m!r} is missing for every image of hypothesis "
                f"{per_hyp.index[per_hyp].tolist()} but present for others"
            )
        available.append(m)
    if not available:
        raise ValueError("scores: every metric is missing (all NaN); nothing to rank")
    return available, unavailable


def _drop_incomplete_images(df: pd.DataFrame, metrics: list[str], region: str) -> tuple[pd.DataFrame, int]:
    """Drop images with a missing score anywhere, from every hypothesis, so comparisons stay paired."""
    bad_rows = df[metrics].isna().any(axis=1)
    if not bad_rows.any():
        return df, 0
    bad_ids = set(df.loc[bad_rows, "image_id"])
    kept = df[~df["image_id"].isin(bad_ids)]
    if kept.empty:
        raise ValueError(f"scores: every image in region {region!r} has a missing metric value")
    warnings.warn(
        f"{len(bad_ids)} image(s) in region {region!r} have missing metric values and are left out "
        "of every hypothesis's statistics",
        RuntimeWarning,
        stacklevel=3,
    )
    return kept, len(bad_ids)


def _score_array(
    df: pd.DataFrame, metrics: list[str], hyps: list[str]
) -> tuple[np.ndarray, list[int], int]:
    """(images, hypotheses, max_seeds, metrics) array, NaN-padded; also seed counts and n_images."""
    images = np.sort(pd.unique(df["image_id"]))
    n_img = len(images)
    n_seeds: list[int] = []
    for h in hyps:
        sub = df[df["hypothesis"] == h]
        n_seeds.append(int(sub["seed"].nunique()))
        counts = sub.groupby("seed")["image_id"].size()
        short = counts[counts != n_img]
        if len(short):
            seed = short.index[0]
            have = set(sub.loc[sub["seed"] == seed, "image_id"])
            lacking = [i for i in images if i not in have]
            raise ValueError(
                f"scores: hypothesis {h!r} seed {seed} lacks {len(lacking)} of the {n_img} test images "
                f"(e.g. {lacking[:3]}); every hypothesis and seed must score the same images"
            )
    h_code = pd.Categorical(df["hypothesis"], categories=hyps).codes
    i_code = pd.Categorical(df["image_id"], categories=images).codes
    s_code = (df.groupby("hypothesis", sort=False)["seed"].rank(method="dense") - 1).to_numpy(int)
    x = np.full((n_img, len(hyps), max(n_seeds), len(metrics)), np.nan)
    x[i_code, h_code, s_code] = df[metrics].to_numpy(float)
    return x, n_seeds, n_img


# --------------------------------------------------------------------------- ranking


def _mask_effect(
    df: pd.DataFrame,
    x: np.ndarray,
    n_seeds: list[int],
    hyps: list[str],
    metrics: list[str],
    n_boot: int,
    alpha: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    info = df.drop_duplicates("hypothesis").set_index("hypothesis")
    by_pair = {(info.at[h, "loss"], bool(info.at[h, "mask"])): i for i, h in enumerate(hyps)}
    losses = [
        loss for loss in pd.unique(info.loc[hyps, "loss"]) if (loss, True) in by_pair and (loss, False) in by_pair
    ]
    if not losses:
        return pd.DataFrame(columns=MASK_EFFECT_COLUMNS)
    seed_avg = np.stack([x[:, h, : n_seeds[h]].mean(axis=1) for h in range(len(hyps))], axis=1)
    diffs = np.stack(
        [seed_avg[:, by_pair[(loss, True)]] - seed_avg[:, by_pair[(loss, False)]] for loss in losses], axis=1
    )
    n_img = diffs.shape[0]
    mean, lo, hi = bootstrap_mean_ci(diffs.reshape(n_img, -1), n_boot, alpha, rng)
    rows = []
    for k, (loss, m) in enumerate((loss, m) for loss in losses for m in metrics):
        rows.append(
            {
                "loss": loss,
                "metric": m,
                "diff": float(mean[k]),
                "ci_low": float(lo[k]),
                "ci_high": float(hi[k]),
                "p_value": paired_p_value(diffs[:, k // len(metrics), k % len(metrics)]),
            }
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p_value"].to_numpy())
    significant = out["p_holm"] < alpha
    out["better"] = np.where(significant, np.where(out["diff"] < 0, "mask", "nomask"), "inconclusive")
    return out[MASK_EFFECT_COLUMNS]


def _overall(hyps: list[str], point: np.ndarray, boot: np.ndarray) -> pd.DataFrame:
    mean_rank = stats.rankdata(point, axis=0).mean(axis=1)
    wins = (point == point.min(axis=0, keepdims=True)).sum(axis=1)
    boot_rank = stats.rankdata(boot, axis=1).mean(axis=2)
    best = boot_rank == boot_rank.min(axis=1, keepdims=True)
    # Ties for best share the replicate, so prob_best sums to one.
    prob_best = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
    order = np.lexsort((np.arange(len(hyps)), -prob_best, mean_rank))
    ranks = np.empty(len(hyps), dtype=int)
    ranks[order] = np.arange(1, len(hyps) + 1)
    out = pd.DataFrame(
        {"hypothesis": hyps, "mean_rank": mean_rank, "rank": ranks, "wins": wins.astype(int), "prob_best": prob_best}
    )
    return out.sort_values("rank", kind="mergesort").reset_index(drop=True)[OVERALL_COLUMNS]


def rank(
    scores: pd.DataFrame, region: str = "full", n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Ranking:
    """Compare every hypothesis on one region's per-image test scores.

    CIs are percentile bootstraps over images and seeds (see crossed_bootstrap). The mask
    effect per loss is the mean over images of the seed-averaged paired difference
    (mask - nomask), with an image bootstrap CI and a Wilcoxon signed-rank p-value, Holm-adjusted
    across every (loss, metric) pair in this region. Those p-values test the seed-averaged models
    over test images: seed-to-seed spread is in the per-hypothesis CIs, not in them.
    """
    check_boot_args(n_boot, alpha)
    df = _validate(scores, region)
    available, unavailable = _split_metrics(df)
    df, n_dropped = _drop_incomplete_images(df, available, region)
    hyps = [str(h) for h in pd.unique(df["hypothesis"])]
    x, n_seeds, n_img = _score_array(df, available, hyps)

    rng = np.random.default_rng(seed)
    point = np.stack([x[:, h, : n_seeds[h]].mean(axis=(0, 1)) for h in range(len(hyps))])
    boot = crossed_bootstrap(x, n_seeds, n_boot, rng)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)

    info = df.drop_duplicates("hypothesis").set_index("hypothesis")
    summary = pd.DataFrame(
        [
            {
                "hypothesis": h,
                "loss": str(info.at[h, "loss"]),
                "mask": bool(info.at[h, "mask"]),
                "metric": m,
                "mean": float(point[i, j]),
                "ci_low": float(lo[i, j]),
                "ci_high": float(hi[i, j]),
                "n_images": n_img,
                "n_seeds": n_seeds[i],
            }
            for i, h in enumerate(hyps)
            for j, m in enumerate(available)
        ],
        columns=SUMMARY_COLUMNS,
    )
    means = pd.DataFrame(point, index=pd.Index(hyps, name="hypothesis"), columns=available)
    return Ranking(
        region=region,
        summary=summary,
        mask_effect=_mask_effect(df, x, n_seeds, hyps, available, n_boot, alpha, rng),
        pareto_front=pareto_front(means),
        dominant=dominant_hypothesis(means),
        overall=_overall(hyps, point, boot),
        unavailable_metrics=unavailable,
        n_boot=int(n_boot),
        alpha=float(alpha),
        n_dropped_images=n_dropped,
    )


