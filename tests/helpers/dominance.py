"""A hypothesis that beats every other on every metric: a check the tests make of the statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis.statistics import _means_matrix, dominance


def dominant_hypothesis(means: pd.DataFrame) -> str | None:
    """The hypothesis that dominates every other one, or None (also None with fewer than two)."""
    frame = _means_matrix(means)
    if len(frame) < 2 or frame.shape[1] == 0:
        return None
    dom = dominance(frame.to_numpy(float))
    np.fill_diagonal(dom, True)
    winners = [str(h) for h, row in zip(frame.index, dom.all(axis=1)) if row]
    return winners[0] if winners else None
