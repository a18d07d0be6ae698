"""The mask effect per loss and the loss x mask factorial, as seed-aware contrasts of hypothesis means.

The question "does the mask help training?" has the trained model as its replicate. A loss's mask
effect is tested (t on the two-part standard error, Holm across its loss x metric family) only when
both sides have at least MIN_TEST_SEEDS seeds; below that the estimate and its interval are shown,
the test is not, and the seed pairings say how consistent the sign is.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis.scores import ScoreCube
from study.analysis.statistics import MIN_TEST_SEEDS, Moments, holm_interval, holm_where, sign_consistency

MASK_EFFECT_COLUMNS = ["loss", "metric", "diff", "ci_low", "ci_high", "se", "df", "p_value", "p_holm", "holm_low",
                       "holm_high", "better", "seeds_mask", "seeds_nomask", "mask_better_pairs", "pairs"]
FACTORIAL_COLUMNS = ["metric", "effect", "level", "estimate", "ci_low", "ci_high", "se", "df", "p_value", "p_holm",
                     "holm_low", "holm_high", "better", "min_seeds", "seeds_assessed"]
NOT_TESTED = "not tested"


def balanced_losses(cube: ScoreCube) -> list[tuple[str, int, int]]:
    """(loss, index of its mask hypothesis, index of its no-mask one) for losses run both ways."""
    index = {(cube.losses[h], cube.masks[h]): k for k, h in enumerate(cube.hypotheses)}
    losses = list(dict.fromkeys(cube.losses[h] for h in cube.hypotheses))
    return [(loss, index[(loss, True)], index[(loss, False)]) for loss in losses
            if (loss, True) in index and (loss, False) in index]


def mask_effect(cube: ScoreCube, moments: Moments, alpha: float) -> pd.DataFrame:
    """One row per (loss, metric): mask - no mask, negative favours the mask."""
    rows = []
    for loss, hm, hn in balanced_losses(cube):
        w = np.zeros(len(cube.hypotheses))
        w[hm], w[hn] = 1.0, -1.0
        c = moments.contrast(w, alpha)
        sm, sn = int(cube.n_seeds[hm]), int(cube.n_seeds[hn])
        testable = min(sm, sn) >= MIN_TEST_SEEDS
        below, pairs = sign_consistency(moments.seed_means[hm, :sm], moments.seed_means[hn, :sn])
        for j, metric in enumerate(cube.metrics):
            rows.append({"loss": loss, "metric": metric, "diff": float(c.estimate[j]), "ci_low": float(c.ci_low[j]),
                         "ci_high": float(c.ci_high[j]), "se": float(c.se[j]), "df": float(c.df[j]),
                         "p_value": float(c.p_value[j]) if testable else np.nan, "seeds_mask": sm,
                         "seeds_nomask": sn, "mask_better_pairs": int(below[j]), "pairs": pairs})
    out = pd.DataFrame(rows, columns=[c for c in MASK_EFFECT_COLUMNS if c not in _ADDED])
    return _adjust(out, "diff", alpha)[MASK_EFFECT_COLUMNS]


_ADDED = ("p_holm", "holm_low", "holm_high", "better")


def _adjust(out: pd.DataFrame, estimate: str, alpha: float,
            sides: tuple[str, str] = ("mask", "nomask")) -> pd.DataFrame:
    """Holm p-values, verdicts and Holm-consistent intervals over the tested rows (the family)."""
    p = out["p_value"].to_numpy(float)
    out["p_holm"] = holm_where(p) if len(out) else []
    low, high = holm_interval(out[estimate].to_numpy(float), out["se"].to_numpy(float), out["df"].to_numpy(float),
                              p, out["p_holm"].to_numpy(float), alpha)
    out["holm_low"], out["holm_high"] = low, high
    out["better"] = [_verdict(d, q, alpha, sides) for d, q in zip(out[estimate], out["p_holm"])]
    return out


def _verdict(diff: float, p_holm: float, alpha: float, sides: tuple[str, str]) -> str:
    """sides[0] when a Holm-significant estimate is below zero, sides[1] when above."""
    if not np.isfinite(p_holm):
        return NOT_TESTED
    if p_holm < alpha:
        return sides[0] if diff < 0 else sides[1]
    return "inconclusive"


def factorial_losses(cube: ScoreCube) -> tuple[list[tuple[str, int, int]], list[str]]:
    """The losses the factorial runs on and the ones it leaves out: when some losses have
    MIN_TEST_SEEDS seeds on both sides, the factorial is those (a failed seed elsewhere costs its
    own loss, not every test); when none has, all balanced losses, estimated but not tested."""
    cells = balanced_losses(cube)
    complete = [c for c in cells if min(cube.n_seeds[c[1]], cube.n_seeds[c[2]]) >= MIN_TEST_SEEDS]
    if not complete:
        return cells, []
    return complete, [c[0] for c in cells if c not in complete]


def factorial(cube: ScoreCube, moments: Moments, alpha: float) -> pd.DataFrame:
    """The paper's question as a 2-way layout over the losses run both ways (those of
    `factorial_losses`): the mask main effect (mask - no mask, averaged over losses), each loss's
    main effect (its mean over mask on/off minus the average over losses) and each loss's
    interaction (its mask effect minus the average mask effect). Negative favours the mask / the
    loss. Tested only with >= 3 seeds per hypothesis."""
    cells, _ = factorial_losses(cube)
    n_hyp, n_loss = len(cube.hypotheses), len(cells)
    contrasts: list[tuple[str, str, np.ndarray]] = []
    if n_loss:
        mask_w = np.zeros(n_hyp)
        for _, hm, hn in cells:
            mask_w[hm], mask_w[hn] = 1 / n_loss, -1 / n_loss
        contrasts.append(("mask", "all losses", mask_w))
    if n_loss >= 2:
        for loss, hm, hn in cells:
            w = np.zeros(n_hyp)
            for _, om, on in cells:
                w[om] -= 0.5 / n_loss
                w[on] -= 0.5 / n_loss
            w[hm] += 0.5
            w[hn] += 0.5
            contrasts.append(("loss", loss, w))
        for loss, hm, hn in cells:
            w = -mask_w.copy()
            w[hm] += 1.0
            w[hn] -= 1.0
            contrasts.append(("loss x mask", loss, w))
    rows = []
    for effect, level, w in contrasts:
        c = moments.contrast(w, alpha)
        testable = c.min_seeds >= MIN_TEST_SEEDS
        for j, metric in enumerate(cube.metrics):
            rows.append({"metric": metric, "effect": effect, "level": level, "estimate": float(c.estimate[j]),
                         "ci_low": float(c.ci_low[j]), "ci_high": float(c.ci_high[j]), "se": float(c.se[j]),
                         "df": float(c.df[j]), "p_value": float(c.p_value[j]) if testable else np.nan,
                         "min_seeds": c.min_seeds, "seeds_assessed": c.seeds_assessed})
    out = pd.DataFrame(rows, columns=[c for c in FACTORIAL_COLUMNS if c not in _ADDED])
    return _adjust(out, "estimate", alpha, ("negative", "positive"))[FACTORIAL_COLUMNS]
