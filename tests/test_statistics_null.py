"""Error rates of the model-level tests on simulated null studies with the smoke study's variance
components (tests/helpers/null_studies.py): every hypothesis equal, so every rejection is false.

Many studies are packed along the metric axis of one cube and go through the same Moments,
mask_effect and factorial that rank() calls; the bootstrap sentences go through rank() itself. CI
runs NULL_STUDIES studies per setting; README's statistics section quotes the full run
(MASKVAE_NULL_STUDIES=2000). The CI count is chosen so that the old Welch-Satterthwaite df over
image and seed parts fails these checks (family-wise error 0.15 at 3 seeds).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from study.analysis.effects import factorial, mask_effect
from study.analysis.statistics import Moments, holm
from tests.helpers.null_studies import HYPOTHESES, METRICS, cube, null_scores

NULL_STUDIES = int(os.environ.get("MASKVAE_NULL_STUDIES", "300"))
RANKED_STUDIES = int(os.environ.get("MASKVAE_RANKED_STUDIES", "60"))
ALPHA = 0.05
TAIL = 0.002  # about alpha / 25: where Holm's smallest p-value is judged
CHUNK = 100


def _holm_any(p: np.ndarray) -> np.ndarray:
    """Per study (row): does Holm reject anything in its family?"""
    return np.array([(holm(row[np.isfinite(row)]) < ALPHA).any() for row in p])


def null_rates(n_seeds: int, heavy: bool, n_studies: int, rng: np.random.Generator) -> dict[str, float]:
    n_met = len(METRICS)
    fwer = fac_fwer = tail = tests = covered = intervals = 0
    for start in range(0, n_studies, CHUNK):
        b = min(CHUNK, n_studies - start)
        c = cube(null_scores(rng, n_seeds, b, heavy))
        c.metrics = [f"m{j}" for j in range(b * n_met)]
        m = Moments(c.x, c.n_seeds)
        # mask_effect rows: loss-major, then study, then metric; a study's family is its 5 x 5 tests.
        p = mask_effect(c, m, ALPHA)["p_value"].to_numpy(float).reshape(-1, b, n_met)
        p = p.transpose(1, 0, 2).reshape(b, -1)
        fwer += _holm_any(p).sum()
        tail += (p < TAIL).sum()
        tests += p.size
        pf = factorial(c, m, ALPHA)["p_value"].to_numpy(float).reshape(-1, b, n_met).transpose(1, 0, 2)
        fac_fwer += _holm_any(pf.reshape(b, -1)).sum()
        for h in range(len(HYPOTHESES)):
            ci = m.contrast(np.eye(len(HYPOTHESES))[h], ALPHA)
            covered += ((ci.ci_low <= 0.3) & (0.3 <= ci.ci_high)).sum()
            intervals += ci.ci_low.size
    return {"fwer": fwer / n_studies, "factorial_fwer": fac_fwer / n_studies, "tail": tail / tests,
            "coverage": covered / intervals}


@pytest.mark.parametrize("n_seeds", [3, 5])
@pytest.mark.parametrize("heavy", [False, True], ids=["normal", "heavy-tailed"])
def test_tests_hold_their_level_on_null_studies(n_seeds: int, heavy: bool) -> None:
    r = null_rates(n_seeds, heavy, NULL_STUDIES, np.random.default_rng(100 * n_seeds + heavy))
    print(f"seeds={n_seeds} heavy={heavy} studies={NULL_STUDIES}: {r}")
    assert r["fwer"] <= 0.06, r
    assert r["factorial_fwer"] <= 0.06, r
    assert r["tail"] <= 1.5 * TAIL, r
    assert r["coverage"] >= 0.94, r


def test_dominates_is_rarely_said_of_a_null_study() -> None:
    """Through rank() and the sentence the report prints: at the point means some hypothesis dominates
    in a sizeable share of null studies; the sentence may claim it only at 95% of the bootstrap."""
    from study.analysis.ranking import rank_cube
    from study.analysis.tables import winner_sentence

    rng = np.random.default_rng(9)
    claimed = at_means = 0
    for _ in range(RANKED_STUDIES):
        r = rank_cube(cube(null_scores(rng, 3)), n_boot=200)
        sentence = winner_sentence(r)
        claimed += "dominates every other hypothesis" in sentence
        at_means += r.dominant is not None
        if r.dominant is not None:
            assert "No hypothesis dominates reliably" in sentence and r.dominant in sentence
    print(f"studies={RANKED_STUDIES}: dominant at the means {at_means}, claimed {claimed}")
    assert claimed <= 0.05 * RANKED_STUDIES


def planted_power(n_seeds: int, seed_sds: float, n_studies: int, rng: np.random.Generator) -> float:
    """Share of (study, metric) in which a mask effect of `seed_sds` seed standard deviations, planted
    in the ssim loss (seed factors 1.0 on both sides), is Holm-significant among the 25 mask tests."""
    from tests.helpers.null_studies import SEED_SD

    n_met, effect = len(METRICS), np.zeros(len(HYPOTHESES))
    effect[HYPOTHESES.index("ssim/mask")] = -seed_sds * SEED_SD
    hits = 0
    for start in range(0, n_studies, CHUNK):
        b = min(CHUNK, n_studies - start)
        c = cube(null_scores(rng, n_seeds, b, effect=effect))
        c.metrics = [f"m{j}" for j in range(b * n_met)]
        p = mask_effect(c, Moments(c.x, c.n_seeds), ALPHA)["p_value"].to_numpy(float).reshape(-1, b, n_met)
        p = p.transpose(1, 0, 2).reshape(b, -1)
        adjusted = np.array([holm(row) for row in p]).reshape(b, -1, n_met)
        hits += (adjusted[:, 2] < ALPHA).sum()
    return hits / (n_studies * n_met)


def test_power_after_holm_grows_with_seeds() -> None:
    """README's power table comes from planted_power (600-1,000 studies a cell); here a quick check
    that a 6 seed-SD effect is found at 5 seeds far more often than at 3."""
    low = planted_power(3, 6.0, 100, np.random.default_rng(1))
    high = planted_power(5, 6.0, 100, np.random.default_rng(2))
    print(f"power at 6 seed SDs: 3 seeds {low:.2f}, 5 seeds {high:.2f}")
    assert high >= 0.9 and low < high
