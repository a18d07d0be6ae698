"""The seed-aware statistics on simulated scores with a known truth: interval coverage, the model-level
mask test's false-positive rate and power, and the crossed bootstrap's calibration."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from study.analysis.ranking import rank
from study.analysis.resampling import crossed_bootstrap
from study.analysis.scores import build_cube
from study.analysis.statistics import Moments
from tests.helpers.scores import make_scores

REPS = 400  # Monte-Carlo sd of a 95% coverage estimate: about 0.011
ALPHA = 0.05


def simulate(rng: np.random.Generator, n_images: int, n_seeds: int, seed_sd: float, effect: float = 0.0,
             image_sd: float = 0.1, interaction_sd: float = 0.01, noise_sd: float = 0.01) -> np.ndarray:
    """x[image, hypothesis, seed, metric] for two hypotheses (mask, no mask) and one metric:
    0.4 + image difficulty (shared) + image x hypothesis + a whole-model shift per seed + noise.
    The truth: hypothesis 0's population mean is 0.4 + effect, hypothesis 1's is 0.4."""
    shape = (n_images, 2, n_seeds, 1)
    x = (0.4 + rng.normal(0, image_sd, (n_images, 1, 1, 1)) + rng.normal(0, interaction_sd, (n_images, 2, 1, 1))
         + rng.normal(0, seed_sd, (1, 2, n_seeds, 1)) + rng.normal(0, noise_sd, shape))
    x[:, 0] += effect
    return x


@pytest.mark.parametrize("n_images, n_seeds, seed_sd", [
    (60, 3, 0.02),   # seed-to-seed spread dominates, as in the smoke study
    (60, 5, 0.01),   # the paper preset's seeds
    (40, 3, 0.002),  # image sampling dominates
])
def test_ci_coverage_is_near_nominal(n_images: int, n_seeds: int, seed_sd: float) -> None:
    rng = np.random.default_rng(11)
    mean_hits = effect_hits = 0
    for _ in range(REPS):
        m = Moments(simulate(rng, n_images, n_seeds, seed_sd, effect=0.03), [n_seeds, n_seeds])
        mean = m.contrast([1.0, 0.0], ALPHA)
        mean_hits += mean.ci_low[0] <= 0.43 <= mean.ci_high[0]
        diff = m.contrast([1.0, -1.0], ALPHA)
        effect_hits += diff.ci_low[0] <= 0.03 <= diff.ci_high[0]
    # The df the seeds carry make these conservative where image sampling is a large share of the
    # variance (README: the trade); they must never undercover.
    assert mean_hits / REPS >= 0.94
    assert effect_hits / REPS >= 0.94


def test_image_only_intervals_would_undercover_when_seeds_vary() -> None:
    """The simulation can tell: ignoring seed spread (the old pseudo-replicated intervals) fails it."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):
        x = simulate(rng, 60, 3, 0.02)
        d = (x[:, 0] - x[:, 1]).mean(axis=1)[:, 0]
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        hits += abs(d.mean()) <= half
    assert hits / 200 < 0.6


def test_model_level_mask_test_holds_its_level_and_has_power() -> None:
    rng = np.random.default_rng(5)
    null_rejections = naive_rejections = power_rejections = 0
    for _ in range(REPS):
        x = simulate(rng, 60, 3, seed_sd=0.02)
        null_rejections += Moments(x, [3, 3]).contrast([1.0, -1.0], ALPHA).p_value[0] < ALPHA
        d = (x[:, 0] - x[:, 1]).mean(axis=1)[:, 0]
        naive_rejections += stats.ttest_1samp(d, 0.0).pvalue < ALPHA
        shifted = simulate(rng, 60, 3, seed_sd=0.01, effect=-0.04)
        power_rejections += Moments(shifted, [3, 3]).contrast([1.0, -1.0], ALPHA).p_value[0] < ALPHA
    # Level plus two Monte-Carlo standard deviations.
    assert null_rejections / REPS <= ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / REPS)
    assert naive_rejections / REPS > 0.3, "images as replicates reject a true null far too often"
    assert power_rejections / REPS > 0.5


def test_rank_reports_exactly_these_statistics() -> None:
    """rank()'s summary CI and mask-effect test are the contrasts checked above, end to end."""
    scores = make_scores({"l1/mask": 0.0, "l1/nomask": 0.02}, n_images=50, n_seeds=4, seed_sd=0.01, seed=2)
    r = rank(scores, n_boot=50)
    cube = build_cube(scores)
    m = Moments(cube.x, cube.n_seeds)
    hyp = cube.hypotheses.index("l1/nomask")
    c = m.contrast(np.eye(2)[hyp], ALPHA)
    rows = r.summary[r.summary["hypothesis"] == "l1/nomask"].set_index("metric").loc[cube.metrics]
    np.testing.assert_allclose(rows["ci_low"], c.ci_low)
    np.testing.assert_allclose(rows["ci_high"], c.ci_high)
    w = np.where(np.array(cube.hypotheses) == "l1/mask", 1.0, -1.0)
    e = r.mask_effect.set_index("metric").loc[cube.metrics]
    np.testing.assert_allclose(e["p_value"], m.contrast(w, ALPHA).p_value)
    # Estimate and interval come from the test's own t statistic: the CI excludes 0 iff p < alpha.
    assert ((e["ci_low"] > 0) | (e["ci_high"] < 0)).tolist() == (e["p_value"] < ALPHA).tolist()


def test_one_seed_intervals_cover_images_only_and_say_so() -> None:
    rng = np.random.default_rng(0)
    c = Moments(simulate(rng, 60, 1, seed_sd=0.02), [1, 1]).contrast([1.0, -1.0], ALPHA)
    assert not c.seeds_assessed and c.min_seeds == 1
    assert np.isfinite([c.ci_low[0], c.ci_high[0]]).all() and c.df[0] == pytest.approx(59, rel=0.3)


def test_crossed_bootstrap_percentiles_cover_with_three_seeds() -> None:
    """The replicates behind rank intervals and P(best) reach beyond the observed seeds as they should."""
    rng = np.random.default_rng(7)
    hits, reps = 0, 200
    for _ in range(reps):
        x = simulate(rng, 40, 3, seed_sd=0.02)[:, :1]
        boot = crossed_bootstrap(x, [3], 400, rng)[:, 0, 0]
        lo, hi = np.quantile(boot, [0.025, 0.975])
        hits += lo <= 0.4 <= hi
    assert 0.90 <= hits / reps <= 0.995
