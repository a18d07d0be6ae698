"""Seed-aware statistics over a score cube (images x hypotheses x seeds x metrics): t intervals and
tests for any linear contrast of hypothesis means, Holm's correction, sign consistency across seed
pairings, Pareto dominance. Pure numpy/scipy.

The design is crossed: every trained model scores the same test images, and seeds are nested in
hypotheses. A hypothesis mean therefore varies with the test images drawn (shared by every model,
so it largely cancels in differences) and with the seeds drawn (a seed is a whole trained model
that shifts every image's score together). The standard error of a contrast adds the two:

    image part  var_i(sum_h w_h xbar_ih) / I   (per-image contrast of seed-averaged scores)
    seed part   sum_h w_h^2 var_s(m_hs) / S_h  (between-seed variance of each hypothesis's seed means)

less the image-by-seed residual that both parts contain (two-way ANOVA mean square, once). The
interval is estimate +- t * SE with the degrees of freedom the seeds carry (`seed_df`: Welch-
Satterthwaite over the seed parts, between min(S_h - 1) and sum(S_h - 1)), so with 3 seeds t has
2 to 4 degrees of freedom per pair, as it must: a percentile bootstrap over 3 seeds never reaches
beyond the observed seed means and covers far below its nominal level.
Estimate, interval and p-value come from one t statistic, so the interval excludes zero exactly
when the unadjusted p-value is below alpha.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

MIN_TEST_SEEDS = 3  # per side, for a model-level test: the replicate is the trained model


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"holm: p_values must be one-dimensional, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("holm: p_values must lie in [0, 1] and contain no NaN")
    m = p.size
    order = np.argsort(p, kind="mergesort")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def holm_where(p_values: np.ndarray) -> np.ndarray:
    """Holm over the finite p-values only (untestable ones stay NaN and are not in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = holm(p[ok])
    return out


def holm_interval(estimate: np.ndarray, se: np.ndarray, df: np.ndarray, p: np.ndarray, p_holm: np.ndarray,
                  alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm-consistent intervals over the tested rows: each at level 1 - alpha / f, where f = p_holm / p
    is the row's own Holm multiplier (between 1 and the family size m). An interval then excludes zero
    exactly when Holm p < alpha, so no printed interval contradicts its verdict either way; each is
    at most as wide as the Bonferroni-simultaneous one. Untested rows (NaN p): NaN."""
    tested = np.isfinite(p)
    low, high = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    m = int(tested.sum())
    if m:
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(p[tested] > 0, np.clip(p_holm[tested] / p[tested], 1.0, m), m)
        half = stats.t.ppf(1 - alpha / (2 * factor), df[tested]) * se[tested]
        low[tested], high[tested] = estimate[tested] - half, estimate[tested] + half
    return low, high


def check_boot_args(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


@dataclass
class Contrast:
    """A contrast's estimate and t interval per metric (arrays of length n_metrics)."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    min_seeds: int
    seeds_assessed: bool  # every hypothesis in the contrast has >= 2 seeds, so seed spread is in the SE


class Moments:
    """The per-cube summaries every contrast needs, computed once."""

    def __init__(self, x: np.ndarray, n_seeds: Sequence[int]) -> None:
        self.n_images, self.n_hyp, _, self.n_metrics = x.shape
        self.n_seeds = np.asarray(n_seeds, dtype=int)
        self.seed_means = x.mean(axis=0)  # (H, S, M): one value per trained model
        self.hyp_means = np.stack([self.seed_means[h, :s].mean(axis=0) for h, s in enumerate(self.n_seeds)])
        self.image_means = np.stack([x[:, h, :s].mean(axis=1) for h, s in enumerate(self.n_seeds)], axis=1)
        self.seed_var = np.zeros((self.n_hyp, self.n_metrics))
        self.residual_ms = np.zeros((self.n_hyp, self.n_metrics))
        n_img = self.n_images
        for h, s in enumerate(self.n_seeds):
            if s < 2:
                continue
            self.seed_var[h] = self.seed_means[h, :s].var(axis=0, ddof=1)
            if n_img > 1:
                resid = (x[:, h, :s] - self.image_means[:, h, None] - self.seed_means[h, None, :s]
                         + self.hyp_means[h])
                self.residual_ms[h] = (resid ** 2).sum(axis=(0, 1)) / ((n_img - 1) * (s - 1))

    def contrast(self, weights: Sequence[float], alpha: float) -> Contrast:
        w = np.asarray(weights, dtype=float)
        used = np.flatnonzero(w)
        n_img = self.n_images
        estimate = w @ self.hyp_means
        comps, seed_parts, seed_dfs = [], [], []
        if n_img > 1:
            per_image = np.tensordot(self.image_means, w, axes=([1], [0]))  # (I, M)
            v_img = per_image.var(axis=0, ddof=1) / n_img
            assessed = [h for h in used if self.n_seeds[h] >= 2]
            overlap = sum((w[h] ** 2 * self.residual_ms[h] / (n_img * self.n_seeds[h]) for h in assessed),
                          np.zeros(self.n_metrics))
            comps.append(np.maximum(v_img - overlap, 0.0))
        for h in used:
            s = self.n_seeds[h]
            if s >= 2:
                seed_parts.append(w[h] ** 2 * self.seed_var[h] / s)
                seed_dfs.append(float(s - 1))
        comps += seed_parts
        total = np.stack(comps).sum(axis=0) if comps else np.zeros(self.n_metrics)
        df = seed_df(seed_parts, seed_dfs, self.n_metrics, n_img)
        se = np.sqrt(total)
        half = stats.t.ppf(1 - alpha / 2, df) * se
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(se > 0, np.abs(estimate) / se, np.where(estimate == 0, 0.0, np.inf))
        p = np.minimum(2 * stats.t.sf(t, df), 1.0)
        min_seeds = int(self.n_seeds[used].min()) if used.size else 0
        return Contrast(estimate=estimate, se=se, df=df, ci_low=estimate - half, ci_high=estimate + half,
                        p_value=p, min_seeds=min_seeds, seeds_assessed=bool(min_seeds >= 2))


def seed_df(seed_parts: list[np.ndarray], seed_dfs: list[float], n_metrics: int, n_images: int) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom over the seed parts alone, between min(S_h - 1) and
    sum(S_h - 1): what the seeds can carry. The image part (n_images - 1 df) is left out of the df.
    With it, a seed variance that happens to come out small also makes the df large, so tail
    p-values were 2-3x too small and Holm's family-wise error over 25 tests was 0.13 instead of 0.05
    at 3 seeds on simulated null studies (tests/test_statistics_null.py). Without it the test is conservative where
    the image part is a large share of the variance; README gives the simulated rates and power.
    No seed part (one seed per hypothesis): the image part is all there is, with its own df."""
    if not seed_parts:
        return np.full(n_metrics, float(n_images - 1) if n_images > 1 else np.inf)
    c, d = np.stack(seed_parts), np.asarray(seed_dfs)[:, None]
    total, denom = c.sum(axis=0), (c ** 2 / d).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, total ** 2 / denom, d.sum())


def sign_consistency(seed_means_a: np.ndarray, seed_means_b: np.ndarray) -> tuple[np.ndarray, int]:
    """Per metric, how many (seed of a, seed of b) pairings have a strictly below b; and the pairings."""
    a, b = np.asarray(seed_means_a, float), np.asarray(seed_means_b, float)
    below = (a[:, None, :] < b[None, :, :]).sum(axis=(0, 1))
    return below.astype(int), int(a.shape[0] * b.shape[0])


# --------------------------------------------------------------------------- dominance


def dominance(values: np.ndarray) -> np.ndarray:
    """dom[..., g, h] is True when row g dominates row h (<= on every metric, < on one); values is
    (..., hypotheses, metrics), lower is better."""
    v = np.asarray(values, dtype=float)
    le = (v[..., :, None, :] <= v[..., None, :, :]).all(axis=-1)
    lt = (v[..., :, None, :] < v[..., None, :, :]).any(axis=-1)
    return le & lt


def _means_matrix(means: pd.DataFrame) -> pd.DataFrame:
    frame = means.set_index("hypothesis") if "hypothesis" in means.columns else means
    frame = frame.select_dtypes(include="number") if not frame.empty else frame
    frame = frame.loc[:, frame.notna().any(axis=0)]
    if frame.isna().any().any():
        bad = frame.columns[frame.isna().any(axis=0)].tolist()
        raise ValueError(f"means have missing values in metric(s) {bad}; drop or fill them first")
    return frame


def pareto_front(means: pd.DataFrame) -> list[str]:
    """Non-dominated hypotheses; means is hypothesis-indexed (or has a hypothesis column) x metrics."""
    frame = _means_matrix(means)
    if frame.shape[1] == 0:
        return [str(h) for h in frame.index]
    dom = dominance(frame.to_numpy(float))
    return [str(h) for h, beaten in zip(frame.index, dom.any(axis=0)) if not beaten]
