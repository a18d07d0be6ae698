"""Paired resampling statistics: bootstrap CIs, Wilcoxon p-values with Holm's correction, Pareto
dominance. Pure numpy/scipy over arrays; `ranking` applies them to per-image scores."""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats

# Caps the (replicates x images) weight matrix at about 32 MB, whatever the test-set size
# (the CelebA test split has ~20k images).
_MAX_WEIGHT_CELLS = 4_000_000



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


def _resample_counts(rng: np.random.Generator, n_rows: int, n: int) -> np.ndarray:
    """Multinomial counts of n draws with replacement from n items, one row per replicate."""
    idx = rng.integers(0, n, size=(n_rows, n))
    flat = (idx + (np.arange(n_rows) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_rows * n).reshape(n_rows, n).astype(np.float64)


def _chunks(n_boot: int, n: int) -> Iterator[tuple[int, int]]:
    step = max(1, _MAX_WEIGHT_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        yield start, min(n_boot, start + step)


def check_boot_args(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int, alpha: float, rng: np.random.Generator
) -> tuple[float | np.ndarray, float | np.ndarray, float | np.ndarray]:
    """Mean and percentile bootstrap CI of the mean.

    ``values`` is (n,) or (n, k); with k columns the rows are resampled together (paired), and
    mean, lo, hi come back as arrays of length k.
    """
    check_boot_args(n_boot, alpha)
    v = np.asarray(values, dtype=float)
    one_d = v.ndim == 1
    if one_d:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"bootstrap_mean_ci: need a non-empty (n,) or (n, k) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("bootstrap_mean_ci: values contain NaN or inf")
    n = v.shape[0]
    boots = np.empty((n_boot, v.shape[1]))
    for start, stop in _chunks(n_boot, n):
        boots[start:stop] = _resample_counts(rng, stop - start, n) @ v / n
    mean = v.mean(axis=0)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    if one_d:
        return float(mean[0]), float(lo[0]), float(hi[0])
    return mean, lo, hi


def crossed_bootstrap(
    x: np.ndarray, n_seeds: Sequence[int], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap means over images and seeds; x is (images, hypotheses, max_seeds, metrics).

    Each replicate draws one set of image ids shared by all hypotheses (paired) and, per
    hypothesis, its seeds with replacement; the statistic is the mean over that images x seeds
    grid. Seeds are resampled per replicate rather than per image because a seed is a whole
    trained model: it shifts every image's score together, and resampling it once per replicate
    keeps that model-to-model spread in the CI. Padding for hypotheses with fewer seeds (NaN)
    gets zero weight.
    """
    n_img, n_hyp, max_seeds, n_met = x.shape
    flat = np.nan_to_num(x, nan=0.0).reshape(n_img, n_hyp * max_seeds * n_met)
    seed_w = np.zeros((n_boot, n_hyp, max_seeds))
    for h, s_h in enumerate(n_seeds):
        seed_w[:, h, :s_h] = _resample_counts(rng, n_boot, s_h) / s_h
    out = np.empty((n_boot, n_hyp, n_met))
    for start, stop in _chunks(n_boot, n_img):
        z = (_resample_counts(rng, stop - start, n_img) @ flat / n_img).reshape(-1, n_hyp, max_seeds, n_met)
        out[start:stop] = np.einsum("bhsm,bhs->bhm", z, seed_w[start:stop])
    return out


def paired_p_value(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value over images; exactly zero differences give p = 1.

    Wilcoxon rather than a sign-flip permutation: it is distribution-free like the permutation
    test but its p-values are not floored at 1/n_permutations, which matters once Holm multiplies
    them by the number of (loss, metric) tests.
    """
    if not np.any(diff != 0):
        return 1.0
    with warnings.catch_warnings():
        # Zeros/ties make scipy fall back to the normal approximation and say so; that is fine.
        warnings.simplefilter("ignore")
        p = float(stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


# --------------------------------------------------------------------------- dominance


def _means_matrix(means: pd.DataFrame) -> pd.DataFrame:
    frame = means.set_index("hypothesis") if "hypothesis" in means.columns else means
    frame = frame.select_dtypes(include="number") if not frame.empty else frame
    frame = frame.loc[:, frame.notna().any(axis=0)]
    if frame.isna().any().any():
        bad = frame.columns[frame.isna().any(axis=0)].tolist()
        raise ValueError(f"means have missing values in metric(s) {bad}; drop or fill them first")
    return frame


def _dominance(values: np.ndarray) -> np.ndarray:
    """dom[g, h] is True when row g dominates row h (<= everywhere, < somewhere)."""
    le = (values[:, None, :] <= values[None, :, :]).all(axis=-1)
    lt = (values[:, None, :] < values[None, :, :]).any(axis=-1)
    return le & lt


def pareto_front(means: pd.DataFrame) -> list[str]:
    """Non-dominated hypotheses; means is hypothesis-indexed (or has a hypothesis column) x metrics."""
    frame = _means_matrix(means)
    if frame.shape[1] == 0:
        return [str(h) for h in frame.index]
    dom = _dominance(frame.to_numpy(float))
    return [str(h) for h, beaten in zip(frame.index, dom.any(axis=0)) if not beaten]


def dominant_hypothesis(means: pd.DataFrame) -> str | None:
    """The hypothesis that dominates every other one, or None (also None with fewer than two)."""
    frame = _means_matrix(means)
    if len(frame) < 2 or frame.shape[1] == 0:
        return None
    dom = _dominance(frame.to_numpy(float))
    np.fill_diagonal(dom, True)
    winners = [str(h) for h, row in zip(frame.index, dom.all(axis=1)) if row]
    return winners[0] if winners else None


# --------------------------------------------------------------------------- input checks
