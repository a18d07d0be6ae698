"""The crossed bootstrap and what it is for: rank intervals, P(best), and how often each hypothesis
is on the Pareto front or dominant. (Means and contrasts get t intervals: see statistics.)

Each replicate redraws both sources of variation. Test images are resampled with replacement, one
draw shared by every hypothesis and seed (comparisons stay paired). Seeds are redrawn per
hypothesis with a wild bootstrap: each seed's deviation from its hypothesis mean gets a random
Gaussian weight, and the sum is scaled to a t with S - 1 degrees of freedom. Resampling 3 seeds
with replacement instead gives only 10 distinct draws that never reach beyond the observed seed
means, so ranks would look separable when the seeds cannot say so; the t scaling matches the
intervals of `statistics`, and one weight per seed for every metric keeps the metrics' seed-to-seed
correlation.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from study.analysis.statistics import dominance

# Caps the (replicates x images) weight matrix at about 32 MB, whatever the test-set size
# (the CelebA test split has ~20k images).
_MAX_WEIGHT_CELLS = 4_000_000


def _resample_counts(rng: np.random.Generator, n_rows: int, n: int) -> np.ndarray:
    """Multinomial counts of n draws with replacement from n items, one row per replicate."""
    idx = rng.integers(0, n, size=(n_rows, n))
    flat = (idx + (np.arange(n_rows) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_rows * n).reshape(n_rows, n).astype(np.float64)


def _chunks(n_boot: int, n: int) -> Iterator[tuple[int, int]]:
    step = max(1, _MAX_WEIGHT_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        yield start, min(n_boot, start + step)


def _seed_part(seed_means: np.ndarray, n_seeds: Sequence[int], n_boot: int,
               rng: np.random.Generator) -> np.ndarray:
    """(n_boot, hypotheses, metrics) draws of each hypothesis's seed-sampling error."""
    n_hyp, _, n_met = seed_means.shape
    out = np.zeros((n_boot, n_hyp, n_met))
    for h, s in enumerate(n_seeds):
        if s < 2:
            continue  # one seed: its spread is unknown, and the report says so
        dev = seed_means[h, :s] - seed_means[h, :s].mean(axis=0)
        weights = rng.standard_normal((n_boot, s))
        # sum_s g_s dev_s has (S - 1) times the between-seed covariance; a mean of S seeds has 1/S of it.
        normal = weights @ dev / np.sqrt(s * (s - 1))
        out[:, h] = normal * np.sqrt((s - 1) / rng.chisquare(s - 1, size=(n_boot, 1)))
    return out


def crossed_bootstrap(x: np.ndarray, n_seeds: Sequence[int], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, hypotheses, metrics) bootstrap means; x is (images, hypotheses, max_seeds, metrics),
    NaN-padded beyond each hypothesis's seeds."""
    n_img, n_hyp, _, n_met = x.shape
    image_means = np.stack([x[:, h, :s].mean(axis=1) for h, s in enumerate(n_seeds)], axis=1)
    flat = image_means.reshape(n_img, n_hyp * n_met)
    out = np.empty((n_boot, n_hyp, n_met))
    for start, stop in _chunks(n_boot, n_img):
        out[start:stop] = (_resample_counts(rng, stop - start, n_img) @ flat / n_img).reshape(-1, n_hyp, n_met)
    return out + _seed_part(x.mean(axis=0), n_seeds, n_boot, rng)


def mean_ranks(values: np.ndarray) -> np.ndarray:
    """(..., hypotheses, metrics) -> (..., hypotheses): the rank per metric (ties averaged), averaged."""
    return stats.rankdata(values, axis=-2).mean(axis=-1)


def standing(score: np.ndarray) -> np.ndarray:
    """Competition ranks along the last axis (lower score is better): ties share the better rank."""
    return stats.rankdata(score, axis=-1, method="min").astype(int)


@dataclass
class RankStats:
    """Per hypothesis (arrays in the cube's hypothesis order)."""

    score: np.ndarray  # mean rank over metrics, point estimate
    rank: np.ndarray  # competition rank of score: ties share it
    rank_low: np.ndarray  # bootstrap rank interval
    rank_high: np.ndarray
    top_group: np.ndarray  # rank interval overlaps the best hypothesis's interval
    p_best: np.ndarray  # share of replicates with the best mean rank (ties split the replicate)
    wins: np.ndarray  # metrics on which the point mean is lowest (ties count for each)
    on_front: np.ndarray  # point Pareto front
    p_front: np.ndarray  # share of replicates on the Pareto front
    dominant: np.ndarray  # dominates every other hypothesis at the point means
    p_dominant: np.ndarray  # share of replicates in which it dominates every other one


def rank_stats(point: np.ndarray, boot: np.ndarray, alpha: float) -> RankStats:
    """point is (hypotheses, metrics), boot (n_boot, hypotheses, metrics); lower is better."""
    n_hyp = point.shape[0]
    score = mean_ranks(point)
    rank = standing(score)
    boot_rank = standing(mean_ranks(boot))
    rank_low = np.quantile(boot_rank, alpha / 2, axis=0, method="lower").astype(int)
    rank_high = np.quantile(boot_rank, 1 - alpha / 2, axis=0, method="higher").astype(int)
    best = rank == 1
    top_group = rank_low <= rank_high[best].max()
    first = boot_rank == 1
    p_best = (first / first.sum(axis=1, keepdims=True)).mean(axis=0)
    wins = (point == point.min(axis=0, keepdims=True)).sum(axis=1)
    dom_point = dominance(point)
    dom_boot = dominance(boot)
    others = ~np.eye(n_hyp, dtype=bool)
    dominates_all = lambda d: ((d | ~others).all(axis=-1)) if n_hyp > 1 else np.zeros(d.shape[:-1], bool)  # noqa: E731
    return RankStats(score=score, rank=rank, rank_low=rank_low, rank_high=rank_high, top_group=top_group,
                     p_best=p_best, wins=wins.astype(int), on_front=~dom_point.any(axis=0),
                     p_front=(~dom_boot.any(axis=-2)).mean(axis=0), dominant=dominates_all(dom_point),
                     p_dominant=dominates_all(dom_boot).mean(axis=0))
