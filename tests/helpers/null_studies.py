"""Simulated studies with the variance components measured on the smoke study, for the error-rate
tests of the statistics: ten hypotheses (five losses, mask on/off), every hypothesis equal (a null
study), 120 test images, five metrics."""
from __future__ import annotations

import numpy as np

from study.analysis.scores import ScoreCube

LOSSES = ("l1", "l2", "ssim", "ssim+l1", "ssim+l2")
HYPOTHESES = [f"{loss}/{m}" for loss in LOSSES for m in ("mask", "nomask")]
METRICS = ["one_minus_ssim", "one_minus_ms_ssim", "one_minus_vif", "l1_x10", "l2_x10"]  # LPIPS unavailable
N_IMAGES = 120
IMAGE_SD, IMAGE_X_HYP_SD, SEED_SD, RESIDUAL_SD = 0.08, 0.04, 0.015, 0.043
# Seed SD factor per hypothesis (grid order), spread 0.44-1.77 as measured; the l1 pair is the most
# unequal one, where a Welch-type df is least reliable.
SEED_FACTORS = np.array([0.44, 1.77, 0.8, 1.2, 1.0, 1.0, 0.6, 1.4, 1.1, 0.9])
METRIC_CORRELATION = 0.7  # the metrics move together: a worse model is worse on all of them


def _noise(rng: np.random.Generator, shape: tuple[int, ...], heavy: bool) -> np.ndarray:
    """Unit-variance draws, correlated along the last axis (metrics x studies packed as (studies, metrics))."""
    def unit(size):
        if not heavy:
            return rng.standard_normal(size)
        return rng.standard_t(3, size) / np.sqrt(3.0)  # t3, scaled to variance 1
    *lead, n_studies, n_met = shape
    common = unit((*lead, n_studies, 1))
    return np.sqrt(METRIC_CORRELATION) * common + np.sqrt(1 - METRIC_CORRELATION) * unit(shape)


def null_scores(rng: np.random.Generator, n_seeds: int, n_studies: int = 1, heavy: bool = False,
                effect: np.ndarray | None = None) -> np.ndarray:
    """x[image, hypothesis, seed, study * metric]: n_studies independent studies packed along the
    metric axis (every statistic in `statistics` is per metric, so one pass serves them all).
    `effect` (hypotheses,) shifts hypothesis means (in score units) to measure power."""
    n_h, n_m = len(HYPOTHESES), len(METRICS)
    image = IMAGE_SD * _noise(rng, (N_IMAGES, 1, 1, n_studies, n_m), heavy)
    inter = IMAGE_X_HYP_SD * _noise(rng, (N_IMAGES, n_h, 1, n_studies, n_m), heavy)
    seed = SEED_SD * SEED_FACTORS[None, :, None, None, None] * _noise(rng, (1, n_h, n_seeds, n_studies, n_m), heavy)
    resid = RESIDUAL_SD * _noise(rng, (N_IMAGES, n_h, n_seeds, n_studies, n_m), heavy)
    x = 0.3 + image + inter + seed + resid
    if effect is not None:
        x += np.asarray(effect, float)[None, :, None, None, None]
    return x.reshape(N_IMAGES, n_h, n_seeds, n_studies * n_m)


def cube(x: np.ndarray, n_seeds: list[int] | None = None) -> ScoreCube:
    """One simulated study (x with the five metrics) as the cube rank() builds from a scores file."""
    n_seeds = np.full(len(HYPOTHESES), x.shape[2]) if n_seeds is None else np.asarray(n_seeds)
    x = x.copy()
    for h, s in enumerate(n_seeds):
        x[:, h, s:] = np.nan
    return ScoreCube(view="decoder", region="face", hypotheses=list(HYPOTHESES),
                     losses={h: h.split("/")[0] for h in HYPOTHESES},
                     masks={h: h.endswith("/mask") for h in HYPOTHESES}, metrics=list(METRICS), unavailable=["lpips"],
                     x=x, n_seeds=n_seeds, seed_ids=[list(range(s)) for s in n_seeds], n_dropped=0)
