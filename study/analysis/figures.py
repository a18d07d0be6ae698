"""The report's effect figures: per-metric means, the mask effect, the factorial effects, the paper.

Points with interval whiskers, never bars (bars on an axis that does not start at zero exaggerate
differences); one panel per available metric (an unavailable metric gets no panel); losses in the
paper's order; legends outside the axes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.loss_names import LOSS_NAMES as PAPER_LOSS_ORDER
from study.analysis.effects import NOT_TESTED
from study.analysis.ranking import METRIC_LABELS, Ranking
from study.analysis.scores import grid_sorted

MASK_COLOURS = {True: "#1f77b4", False: "#d95f02"}
MASK_NAMES = {True: "mask", False: "no mask"}


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend state
    return fig


def save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")


def panel_grid(fig: Figure, n: int, ncols: int = 3, **share: Any) -> list[Any]:
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False, **share).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def loss_order(losses) -> list[str]:
    losses = list(dict.fromkeys(map(str, losses)))
    return [l for l in PAPER_LOSS_ORDER if l in losses] + [l for l in losses if l not in PAPER_LOSS_ORDER]


def _unavailable_note(r: Ranking) -> str:
    if not r.unavailable_metrics:
        return ""
    return f"; unavailable, not shown: {', '.join(METRIC_LABELS[m] for m in r.unavailable_metrics)}"


def _legend_below(fig: Figure, handles: list, labels: list) -> None:
    """Below the panels, outside every axis, so it covers no data."""
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), frameon=False)


def _unique_handles(axes: list[Any]) -> tuple[list, list]:
    """Each label once, from whichever panel shows it."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    return list(handles.values()), list(handles)


def plot_metric_points(r: Ranking, path: Path) -> None:
    """Per metric, each loss's mask and no-mask means with their seed-aware CIs."""
    metrics = r.metrics
    losses = loss_order(r.summary["loss"])
    fig = new_figure(4.2 * min(3, len(metrics)), 3.4 * math.ceil(len(metrics) / 3) + 0.9)
    x = np.arange(len(losses))
    for ax, metric in zip(panel_grid(fig, len(metrics)), metrics):
        rows = r.summary[r.summary["metric"] == metric]
        for k, mask in enumerate((True, False)):
            sel = rows[rows["mask"] == mask].set_index("loss").reindex(losses)
            mean = sel["mean"].to_numpy(float)
            err = np.vstack([mean - sel["ci_low"].to_numpy(float), sel["ci_high"].to_numpy(float) - mean])
            ax.errorbar(x + (k - 0.5) * 0.25, mean, yerr=err, fmt="o", capsize=3, color=MASK_COLOURS[mask],
                        label=MASK_NAMES[mask])
        _loss_axis(ax, metric, losses)
    _legend_below(fig, *_unique_handles(fig.axes))
    fig.suptitle(f"Test metrics, {r.title}: mean and {1 - r.alpha:.0%} seed-aware CI (lower is better)"
                 f"{_unavailable_note(r)};\nthe CIs include the image variance all hypotheses share: compare "
                 "hypotheses on the paired differences (mask-effect figure)", fontsize=10)
    save(fig, path)


def _loss_axis(ax: Any, metric: str, losses: list[str]) -> None:
    """A metric's panel with the losses along x, in the paper's order."""
    ax.set_title(METRIC_LABELS[metric])
    ax.set_xticks(np.arange(len(losses)), losses)
    ax.set_xlim(-0.6, len(losses) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def plot_mask_effect(r: Ranking, path: Path) -> None:
    """Per metric, mask - no mask per loss with its seed-aware CI; below zero favours the mask."""
    e = r.mask_effect
    metrics = [m for m in r.metrics if m in set(e["metric"])]
    losses = loss_order(e["loss"])
    fig = new_figure(4.2 * min(3, len(metrics)), 3.2 * math.ceil(len(metrics) / 3) + 0.9)
    x = np.arange(len(losses))
    styles = {"mask": ("#1b9e77", "mask better"), "nomask": ("#d95f02", "no mask better"),
              "inconclusive": ("#555555", "inconclusive"), NOT_TESTED: ("#555555", "not tested (< 3 seeds)")}
    for ax, metric in zip(panel_grid(fig, len(metrics)), metrics):
        sel = e[e["metric"] == metric].set_index("loss").reindex(losses)
        ax.axhline(0, color="black", lw=0.8)
        for verdict, (colour, label) in styles.items():
            pick = (sel["better"] == verdict).to_numpy()
            if not pick.any():
                continue
            d = sel["diff"].to_numpy(float)[pick]
            low, high = _shown_interval(sel)
            err = np.vstack([d - low[pick], high[pick] - d])
            hollow = verdict in ("inconclusive", NOT_TESTED)
            ax.errorbar(x[pick], d, yerr=err, fmt="s" if verdict == NOT_TESTED else "o",
                        mfc="white" if hollow else colour, color=colour, capsize=3, label=label)
        _loss_axis(ax, metric, losses)
    _legend_below(fig, *_unique_handles(fig.axes))
    fig.suptitle(f"Mask effect, {r.title}: mask − no mask (paired by image), {_interval_title(e, r.alpha)};\n"
                 "filled: Holm p < alpha (below 0 favours the mask)", fontsize=10)
    save(fig, path)


def _shown_interval(sel: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The Holm-adjusted interval where a row was tested, else its unadjusted one (the title says which)."""
    tested = (sel["better"] != NOT_TESTED).to_numpy()
    low = np.where(tested, sel["holm_low"].to_numpy(float), sel["ci_low"].to_numpy(float))
    high = np.where(tested, sel["holm_high"].to_numpy(float), sel["ci_high"].to_numpy(float))
    return low, high


def _interval_title(frame: pd.DataFrame, alpha: float) -> str:
    m = int((frame["better"] != NOT_TESTED).sum())
    level = f"{1 - alpha:.0%}"
    if m == 0:
        return f"unadjusted {level} CI (not tested)"
    return (f"Holm-adjusted {level} CI ({m} tests: excludes 0 exactly when Holm p < alpha)"
            + ("; untested: unadjusted CI" if m < len(frame) else ""))


def plot_factorial(r: Ranking, path: Path) -> None:
    """Per metric, a forest plot of the mask main effect, each loss's main effect and its interaction."""
    f = r.factorial
    metrics = [m for m in r.metrics if m in set(f["metric"])]
    first = f[f["metric"] == metrics[0]]
    labels = [_factor_label(row) for _, row in first.iterrows()]
    y = np.arange(len(labels))[::-1]
    fig = new_figure(4.0 * min(3, len(metrics)), 0.32 * len(labels) * math.ceil(len(metrics) / 3) + 1.6)
    colours = {"mask": "#1b9e77", "loss": "#7570b3", "loss x mask": "#e7298a"}
    axes = panel_grid(fig, len(metrics), sharey=True)
    for ax, metric in zip(axes, metrics):
        sel = f[f["metric"] == metric].reset_index(drop=True)
        ax.axvline(0, color="black", lw=0.8)
        low, high = _shown_interval(sel)
        significant = sel["better"].isin(["negative", "positive"]).to_numpy()
        for effect, colour in colours.items():
            for filled in (True, False):
                pick = (sel["effect"] == effect).to_numpy() & (significant == filled)
                if pick.any():
                    est = sel["estimate"].to_numpy(float)[pick]
                    err = np.vstack([est - low[pick], high[pick] - est])
                    ax.errorbar(est, y[pick], xerr=err, fmt="o", color=colour, mfc=colour if filled else "white",
                                capsize=2, label=effect)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(axis="x", alpha=0.3)
    _legend_below(fig, *_unique_handles(axes))
    fig.suptitle(f"Loss x mask factorial, {r.title}: effects with {_interval_title(f, r.alpha)};\n"
                 "filled: Holm p < alpha (below 0 favours the mask / the loss)", fontsize=10)
    save(fig, path)


def _factor_label(row: pd.Series) -> str:
    if row["effect"] == "mask":
        return "mask (all losses)"
    if row["effect"] == "loss":
        return f"loss {row['level']}"
    return f"{row['level']} × mask"


def plot_paper_comparison(r: Ranking, paper: pd.DataFrame, path: Path) -> None:
    """Per metric, this study's means (with CI) next to the paper's published values."""
    hyps = grid_sorted(h for h in r.hypotheses if h in paper.index)
    metrics = r.metrics
    means = r.means()
    lo, hi = r.ci()
    fig = new_figure(4.6 * min(3, len(metrics)), 3.8 * math.ceil(len(metrics) / 3) + 0.9)
    x = np.arange(len(hyps))
    for ax, metric in zip(panel_grid(fig, len(metrics)), metrics):
        m = means.loc[hyps, metric].to_numpy(float)
        err = np.vstack([m - lo.loc[hyps, metric].to_numpy(float), hi.loc[hyps, metric].to_numpy(float) - m])
        ax.errorbar(x - 0.12, m, yerr=err, fmt="o", color="#2ca02c", capsize=2, label="this study")
        ax.plot(x + 0.12, paper.loc[hyps, metric].to_numpy(float), "D", mfc="white", color="#555555",
                label="paper")
        ax.set_title(METRIC_LABELS[metric])
        ax.set_xticks(x, hyps, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    _legend_below(fig, *_unique_handles(fig.axes))
    fig.suptitle(f"{r.title.capitalize()}: this study vs the paper's published values (lower is better)"
                 f"{_unavailable_note(r)}")
    save(fig, path)
