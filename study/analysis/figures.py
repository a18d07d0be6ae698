"""The report's figures: per-metric charts, the paper comparison, the tuning trials."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from study.analysis.ranking import METRIC_LABELS, METRICS, REGION_TITLES, Ranking
from study.search.objective import best

MASK_COLOURS = {True: "#1f77b4", False: "#ff7f0e"}
MASK_NAMES = {True: "mask", False: "no mask"}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend state
    return fig


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")


def _panel_grid(fig: Figure, n: int, ncols: int = 3, share: bool = False) -> list[Any]:
    nrows = max(1, math.ceil(n / ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=share, sharey=share).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def _zoom(ax: Any, lows: list[float], highs: list[float]) -> None:
    """Y range around the data: the differences between hypotheses are small next to the values."""
    lows = [v for v in lows if np.isfinite(v)]
    highs = [v for v in highs if np.isfinite(v)]
    if not lows:
        return
    lo, hi = min(lows), max(highs)
    span = max(hi - lo, 1e-3 * max(abs(hi), 1e-9))
    ax.set_ylim(max(0.0, lo - 0.6 * span), hi + 0.25 * span)


def plot_metric_bars(ranking: Ranking, path: Path) -> None:
    """One panel per metric: losses on x, mask vs no-mask bars side by side with CI error bars."""
    summary = ranking.summary
    losses = list(pd.unique(summary["loss"]))
    fig = _new_figure(13, 7)
    x = np.arange(len(losses))
    width = 0.38
    for ax, metric in zip(_panel_grid(fig, len(METRICS)), METRICS):
        ax.set_title(METRIC_LABELS[metric])
        ax.set_xticks(x, losses)
        ax.set_xlim(-0.6, len(losses) - 0.4)
        ax.grid(axis="y", alpha=0.3)
        if metric in ranking.unavailable_metrics or metric not in ranking.metrics:
            ax.text(0.5, 0.5, "unavailable", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_yticks([])
            continue
        rows = summary[summary["metric"] == metric]
        lows, highs = [], []
        for k, mask in enumerate((True, False)):
            sel = rows[rows["mask"] == mask].set_index("loss").reindex(losses)
            mean = sel["mean"].to_numpy(float)
            err = np.vstack([mean - sel["ci_low"].to_numpy(float), sel["ci_high"].to_numpy(float) - mean])
            ax.bar(
                x + (k - 0.5) * width,
                mean,
                width,
                yerr=err,
                capsize=3,
                color=MASK_COLOURS[mask],
                label=MASK_NAMES[mask],
                error_kw={"elinewidth": 1, "ecolor": "black"},
            )
            lows += list(sel["ci_low"])
            highs += list(sel["ci_high"])
        _zoom(ax, lows, highs)
    handles, labels = next(
        (ax.get_legend_handles_labels() for ax in fig.axes if ax.get_legend_handles_labels()[0]), ([], [])
    )
    fig.legend(handles, labels, loc="outside upper right", ncols=2)
    fig.suptitle(
        f"Test metrics, {REGION_TITLES.get(ranking.region, ranking.region)}: mean with "
        f"{1 - ranking.alpha:.0%} bootstrap CI (lower is better; y axes do not start at 0)"
    )
    _save(fig, path)


def plot_paper_comparison(ranking: Ranking, paper: pd.DataFrame, path: Path) -> None:
    """Per metric, our full-output means (with CI) next to the paper's published values."""
    hyps = [h for h in ranking.hypotheses if h in paper.index]
    means = ranking.means()
    lo, hi = ranking.ci()
    fig = _new_figure(14, 7.5)
    x = np.arange(len(hyps))
    width = 0.38
    for ax, metric in zip(_panel_grid(fig, len(METRICS)), METRICS):
        ax.set_title(METRIC_LABELS[metric])
        ax.set_xticks(x, hyps, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ref = paper.loc[hyps, metric].to_numpy(float)
        ax.bar(x + width / 2, ref, width, color="#7f7f7f", label="paper")
        lows, highs = list(ref), list(ref)
        if metric in ranking.metrics:
            m = means.loc[hyps, metric].to_numpy(float)
            err = np.vstack([m - lo.loc[hyps, metric].to_numpy(float), hi.loc[hyps, metric].to_numpy(float) - m])
            ax.bar(x - width / 2, m, width, yerr=err, capsize=2, color="#2ca02c", label="this study")
            lows += list(lo.loc[hyps, metric])
            highs += list(hi.loc[hyps, metric])
        else:
            ax.text(0.5, 0.9, "ours: unavailable", ha="center", transform=ax.transAxes, color="grey")
        _zoom(ax, lows, highs)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=2)
    fig.suptitle(
        "Full-output test metrics: this study vs the paper's published values "
        "(lower is better; y axes do not start at 0)"
    )
    _save(fig, path)


def plot_trials(trials: pd.DataFrame, mode: str, path: Path) -> None:
    """Per hypothesis, tried (lr, kl_weight) coloured by the objective; the best trial starred."""
    hyps = list(pd.unique(trials["hypothesis"]))
    ncols = min(5, len(hyps))
    fig = _new_figure(3.4 * ncols, 3.2 * math.ceil(len(hyps) / ncols) + 0.6)
    # Shared axes: every hypothesis searches the same (lr, kl_weight) box.
    for ax, h in zip(_panel_grid(fig, len(hyps), ncols, share=True), hyps):
        sub = trials[trials["hypothesis"] == h]
        ok = sub[np.isfinite(sub["objective"].to_numpy(float))]
        failed = sub.drop(ok.index)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(h, fontsize=10)
        ax.set_xlabel("lr")
        ax.set_ylabel("kl_weight")
        # Minor-tick labels collide when a search range spans less than a decade.
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        if len(failed):
            ax.scatter(failed["lr"], failed["kl_weight"], marker="x", color="grey", label="no objective")
        if len(ok):
            # Each hypothesis optimises its own loss, so objectives are only comparable within a panel.
            norm = Normalize(ok["objective"].min(), ok["objective"].max())
            points = ax.scatter(ok["lr"], ok["kl_weight"], c=ok["objective"], cmap="viridis_r" if mode == "min" else "viridis", norm=norm, s=28)
            best_row = best_trial(ok, mode)
            ax.scatter([best_row["lr"]], [best_row["kl_weight"]], marker="*", s=180, facecolor="none", edgecolor="red")
            fig.colorbar(points, ax=ax, label=f"objective ({'lower' if mode == 'min' else 'higher'} is better)")
    fig.suptitle("Tuning trials per hypothesis (red star: best objective; grey x: failed/no objective)")
    _save(fig, path)


def best_trial(trials: pd.DataFrame, mode: str) -> pd.Series | None:
    """The best row of a trials table by the objective's own mode (the study's one "better" rule)."""
    label = best(trials.index, lambda i: trials.at[i, "objective"], mode)
    return None if label is None else trials.loc[label]
