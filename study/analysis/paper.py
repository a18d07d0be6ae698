"""The paper's published numbers and how this study's directions compare with them.

The paper scored the composed output on the full image of CelebA at 144 px. The direction of an
effect (does the mask lower the metric? which hypotheses rank ahead?) can be compared on any
dataset; its magnitude only on that one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from study.analysis.resampling import mean_ranks
from study.analysis.ranking import Ranking
from study.analysis.scores import METRICS, hypothesis_name

PAPER_REFERENCE_PATH = Path(__file__).with_name("paper_reference.csv")
PAPER_SETTING = ("celeba", 144)
DIRECTION_COLUMNS = ["view", "region", "loss", "metric", "paper_diff", "study_diff", "ci_low", "ci_high", "agree",
                     "clear"]
TAU_COLUMNS = ["view", "region", "ranking", "kendall_tau", "n_hypotheses"]


def load_paper_reference(path: Path | str | None = None) -> pd.DataFrame:
    """The paper's published test numbers, indexed by hypothesis (``l1/mask`` ...)."""
    path = Path(path) if path is not None else PAPER_REFERENCE_PATH
    if not path.is_file():
        raise FileNotFoundError(f"paper reference file {path} not found")
    df = pd.read_csv(path, comment="#", skip_blank_lines=True)
    missing = [c for c in ("loss", "mask", *METRICS) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    mask_text = df["mask"].astype(str).str.strip().str.lower()
    bad = ~mask_text.isin(["true", "false"])
    if bad.any():
        raise ValueError(f"{path}: column 'mask' must be true/false, got {df.loc[bad, 'mask'].iloc[0]!r}")
    df["mask"] = mask_text == "true"
    df["loss"] = df["loss"].astype(str).str.strip()
    for m in METRICS:
        try:
            df[m] = pd.to_numeric(df[m])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: column {m!r} is not numeric: {exc}") from exc
    df["hypothesis"] = [hypothesis_name(l, m) for l, m in zip(df["loss"], df["mask"])]
    dup = df["hypothesis"].duplicated()
    if dup.any():
        raise ValueError(f"{path}: hypothesis {df.loc[dup, 'hypothesis'].iloc[0]!r} appears twice")
    return df.set_index("hypothesis")[["loss", "mask", *METRICS]]


def magnitudes_comparable(source: str | None, image_size: int | None) -> bool:
    return (str(source).lower(), image_size) == PAPER_SETTING


def direction_agreement(ranking: Ranking, paper: pd.DataFrame) -> pd.DataFrame:
    """Per loss x metric: the sign of the paper's mask effect against this study's. `clear` says
    whether the study's effect is Holm-significant, the correction the mask-effect table applies (an
    agreement inside noise is no agreement, and neither is one of many unadjusted intervals)."""
    rows = []
    for e in ranking.mask_effect.itertuples(index=False):
        mask_h, nomask_h = hypothesis_name(e.loss, True), hypothesis_name(e.loss, False)
        if mask_h not in paper.index or nomask_h not in paper.index:
            continue
        paper_diff = float(paper.at[mask_h, e.metric] - paper.at[nomask_h, e.metric])
        rows.append({"view": ranking.view, "region": ranking.region, "loss": e.loss, "metric": e.metric,
                     "paper_diff": paper_diff, "study_diff": float(e.diff), "ci_low": float(e.ci_low),
                     "ci_high": float(e.ci_high), "agree": bool(np.sign(paper_diff) == np.sign(e.diff)),
                     "clear": bool(np.isfinite(e.p_holm) and e.p_holm < ranking.alpha)})
    return pd.DataFrame(rows, columns=DIRECTION_COLUMNS)


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)  # tau-b: ties count neither way


def ranking_agreement(ranking: Ranking, paper: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau between the paper's and this study's orderings of the shared hypotheses: on the
    mean rank over the metrics both have, and per metric."""
    hyps = [h for h in ranking.hypotheses if h in paper.index]
    metrics = ranking.metrics
    ours = ranking.means().loc[hyps, metrics].to_numpy(float)
    theirs = paper.loc[hyps, metrics].to_numpy(float)
    rows = [{"ranking": "mean rank over metrics",
             "kendall_tau": _tau(mean_ranks(ours), mean_ranks(theirs)) if hyps else float("nan")}]
    rows += [{"ranking": m, "kendall_tau": _tau(ours[:, j], theirs[:, j])} for j, m in enumerate(metrics)]
    out = pd.DataFrame(rows).assign(view=ranking.view, region=ranking.region, n_hypotheses=len(hyps))
    return out[TAU_COLUMNS]
