"""Per-image test scores as the statistics see them: validated, split by (view, region), and laid out
as an images x hypotheses x seeds x metrics cube in the paper's grid order.

Every metric is lower-is-better. Every model (hypothesis x seed) scores the same test images, so
images are crossed with models and comparisons between hypotheses are paired by image; seeds are
nested in hypotheses (seed 1 of one hypothesis has nothing in common with seed 1 of another).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.metric_names import METRIC_LABELS, METRIC_NAMES
from study.config.hypotheses import Hypothesis, hypothesis_grid
from study.config.views import FULL, LEGACY_VIEW, PAIR_ORDER, REGION_TITLES, VIEW_TITLES

METRICS: tuple[str, ...] = METRIC_NAMES
ID_COLUMNS: tuple[str, ...] = ("hypothesis", "loss", "mask", "seed", "image_id", "region")
GRID_ORDER: tuple[str, ...] = tuple(h.name for h in hypothesis_grid())


def pair_title(view: str, region: str) -> str:
    return f"{VIEW_TITLES.get(view, view + ' view')}, {REGION_TITLES.get(region, region)}"


def hypothesis_name(loss: str, mask: bool) -> str:
    """The study's hypothesis name, e.g. ``ssim+l2/mask``."""
    return Hypothesis(loss, bool(mask)).name


def grid_sorted(hypotheses) -> list[str]:
    """Hypotheses in the paper's grid order (losses l1, l2, ssim, ssim+l1, ssim+l2; mask first);
    names outside the grid follow in the order given."""
    hyps = [str(h) for h in hypotheses]
    known = [h for h in GRID_ORDER if h in hyps]
    return known + [h for h in dict.fromkeys(hyps) if h not in GRID_ORDER]


def with_view(scores: pd.DataFrame) -> pd.DataFrame:
    """The scores with a `view` column; legacy files without one hold composed scores."""
    if "view" in scores.columns:
        return scores
    return scores.assign(view=LEGACY_VIEW)


def pairs_present(scores: pd.DataFrame) -> list[tuple[str, str]]:
    """Every (view, region) pair in the scores, headline first."""
    if "region" not in scores.columns:
        raise ValueError("scores: missing column(s) ['region']")
    found = set(with_view(scores)[["view", "region"]].astype(str).itertuples(index=False, name=None))
    return [p for p in PAIR_ORDER if p in found] + sorted(found - set(PAIR_ORDER))


@dataclass
class ScoreCube:
    """One (view, region)'s scores: x[image, hypothesis, seed, metric], NaN-padded where a hypothesis
    has fewer seeds than the most."""

    view: str
    region: str
    hypotheses: list[str]
    losses: dict[str, str]
    masks: dict[str, bool]
    metrics: list[str]
    unavailable: list[str]
    x: np.ndarray
    n_seeds: np.ndarray
    seed_ids: list[list]
    n_dropped: int

    @property
    def n_images(self) -> int:
        return int(self.x.shape[0])

    def seed_means(self) -> np.ndarray:
        """(hypotheses, max_seeds, metrics): each trained model's mean over images (NaN padding)."""
        return self.x.mean(axis=0)


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


def _select(scores: pd.DataFrame, view: str, region: str) -> pd.DataFrame:
    missing = [c for c in (*ID_COLUMNS, *METRICS) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores: missing column(s) {missing}")
    scores = with_view(scores)
    df = scores[(scores["region"] == region) & (scores["view"] == view)]
    if df.empty:
        present = [f"{v}/{r}" for v, r in pairs_present(scores)]
        raise ValueError(f"scores: no rows for view {view!r}, region {region!r} (present: {present})")
    df = df.copy()
    for m in METRICS:
        try:
            df[m] = df[m].astype(float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scores: metric column {m!r} is not numeric: {exc}") from exc
    for c in ("image_id", "hypothesis", "loss"):
        df[c] = df[c].astype(str)
    df["mask"] = _as_bool(df["mask"])
    pairs = df.groupby("hypothesis", sort=False)[["loss", "mask"]].nunique()
    ambiguous = pairs.index[(pairs > 1).any(axis=1)].tolist()
    if ambiguous:
        raise ValueError(f"scores: hypothesis {ambiguous} maps to more than one (loss, mask)")
    dup = df.duplicated(["hypothesis", "seed", "image_id"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"scores: duplicate row for hypothesis {row['hypothesis']!r}, seed {row['seed']}, "
                         f"image {row['image_id']!r} in view {view!r}, region {region!r}")
    return df


def _split_metrics(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    available, unavailable = [], []
    for m in METRICS:
        if df[m].isna().all():
            unavailable.append(m)  # e.g. LPIPS without its weights: reported as unavailable, never estimated
            continue
        per_hyp = df.groupby("hypothesis", sort=False)[m].apply(lambda s: s.isna().all())
        if per_hyp.any():
            raise ValueError(f"scores: metric {m!r} is missing for every image of hypothesis "
                             f"{per_hyp.index[per_hyp].tolist()} but present for others")
        available.append(m)
    if not available:
        raise ValueError("scores: every metric is missing (all NaN); nothing to rank")
    return available, unavailable


def _drop_incomplete_images(df: pd.DataFrame, metrics: list[str], where: str) -> tuple[pd.DataFrame, int]:
    """Drop images with a missing score anywhere, from every hypothesis, so comparisons stay paired."""
    bad_rows = df[metrics].isna().any(axis=1)
    if not bad_rows.any():
        return df, 0
    bad_ids = set(df.loc[bad_rows, "image_id"])
    kept = df[~df["image_id"].isin(bad_ids)]
    if kept.empty:
        raise ValueError(f"scores: every image in {where} has a missing metric value")
    warnings.warn(f"{len(bad_ids)} image(s) in {where} have missing metric values and are left out "
                  "of every hypothesis's statistics", RuntimeWarning, stacklevel=3)
    return kept, len(bad_ids)


def build_cube(scores: pd.DataFrame, view: str = LEGACY_VIEW, region: str = FULL) -> ScoreCube:
    """Validate one (view, region)'s scores and lay them out as a cube; errors name the problem."""
    df = _select(scores, view, region)
    available, unavailable = _split_metrics(df)
    df, n_dropped = _drop_incomplete_images(df, available, f"view {view!r}, region {region!r}")
    hyps = grid_sorted(pd.unique(df["hypothesis"]))
    images = np.sort(pd.unique(df["image_id"]))
    n_img = len(images)
    seed_ids: list[list] = []
    for h in hyps:
        sub = df[df["hypothesis"] == h]
        seed_ids.append(sorted(pd.unique(sub["seed"]).tolist()))
        counts = sub.groupby("seed")["image_id"].size()
        short = counts[counts != n_img]
        if len(short):
            seed = short.index[0]
            have = set(sub.loc[sub["seed"] == seed, "image_id"])
            lacking = [i for i in images if i not in have]
            raise ValueError(f"scores: hypothesis {h!r} seed {seed} lacks {len(lacking)} of the {n_img} test images "
                             f"(e.g. {lacking[:3]}); every hypothesis and seed must score the same images")
    n_seeds = np.array([len(s) for s in seed_ids])
    h_code = pd.Categorical(df["hypothesis"], categories=hyps).codes
    i_code = pd.Categorical(df["image_id"], categories=images).codes
    # Seeds are numbered per hypothesis in sorted order, matching seed_ids.
    s_code = (df.groupby("hypothesis", sort=False)["seed"].rank(method="dense") - 1).to_numpy(int)
    x = np.full((n_img, len(hyps), int(n_seeds.max()), len(available)), np.nan)
    x[i_code, h_code, s_code] = df[available].to_numpy(float)
    info = df.drop_duplicates("hypothesis").set_index("hypothesis")
    return ScoreCube(view=view, region=region, hypotheses=hyps,
                     losses={h: str(info.at[h, "loss"]) for h in hyps},
                     masks={h: bool(info.at[h, "mask"]) for h in hyps},
                     metrics=available, unavailable=unavailable, x=x, n_seeds=n_seeds, seed_ids=seed_ids,
                     n_dropped=n_dropped)
