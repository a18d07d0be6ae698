"""The report's rank and tuning figures: a critical-difference diagram from bootstrap rank intervals,
and the tuning trials on one shared colour scale."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from study.analysis.figures import new_figure, panel_grid, save
from study.analysis.ranking import Ranking
from study.analysis.scores import grid_sorted
from study.search.objective import best


def separable_groups(low: np.ndarray, high: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs i..j (in rank order) whose rank intervals all overlap one another: the
    hypotheses a critical-difference diagram joins with a bar."""
    groups: list[tuple[int, int]] = []
    n = len(low)
    for i in range(n):
        j = i
        while j + 1 < n and max(low[i:j + 2]) <= min(high[i:j + 2]):
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in groups):
            groups.append((i, j))
    return groups


def plot_rank_intervals(r: Ranking, path: Path) -> None:
    """Critical-difference diagram: each hypothesis at its rank with its bootstrap rank interval;
    a bar joins hypotheses the data cannot separate (overlapping intervals)."""
    o = r.overall.reset_index(drop=True)
    n = len(o)
    fig = new_figure(8.5, 0.42 * n + 1.6)
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    top = o["top_group"].to_numpy(bool) if len(r.top_group) > 1 else np.zeros(n, bool)
    for k, row in o.iterrows():
        colour = "#1f77b4" if top[k] else "#444444"
        ax.plot([row["rank_low"], row["rank_high"]], [y[k], y[k]], color=colour, lw=2)
        ax.plot([row["rank"]], [y[k]], "o", color=colour)
    labels = [f"{h}  ({int(rk)}{'=' if t else ''})" for h, rk, t in zip(o["hypothesis"], o["rank"], o["tied"])]
    ax.set_yticks(y, labels, fontsize=9)
    groups = separable_groups(o["rank_low"].to_numpy(), o["rank_high"].to_numpy())
    for g, (i, j) in enumerate(groups):
        xg = n + 0.6 + 0.35 * g
        ax.plot([xg, xg], [y[i] + 0.2, y[j] - 0.2], color="#d62728", lw=4, solid_capstyle="butt")
    ax.set_xlim(0.5, n + 1.0 + 0.35 * max(len(groups), 1))
    ax.set_xticks(range(1, n + 1))
    ax.set_xlabel("rank (1 = best mean rank over metrics)")
    ax.grid(axis="x", alpha=0.3)
    caveat = ("" if r.claims_ok else
              f"; fewer than 3 seeds for {', '.join(r.short)}: their intervals understate seed spread" if r.any_claims
              else f"; only {'/'.join(map(str, r.seed_counts))} seed(s): intervals understate seed spread")
    fig.suptitle(f"Ranks, {r.title}: point = rank, line = {1 - r.alpha:.0%} bootstrap rank interval;\n"
                 f"red bars join hypotheses that are not separable; blue = not distinguishable from the best{caveat}",
                 fontsize=10)
    save(fig, path)


def best_trial(trials: pd.DataFrame, mode: str) -> pd.Series | None:
    """The best row of a trials table by the objective's own mode (the study's one "better" rule)."""
    label = best(trials.index, lambda i: trials.at[i, "objective"], mode)
    return None if label is None else trials.loc[label]


def _scaled_objective(objective: pd.Series, mode: str) -> pd.Series:
    """0 = the hypothesis's best trial, 1 = its worst: objectives of different losses are not comparable,
    their order within a hypothesis is."""
    lo, hi = objective.min(), objective.max()
    if hi == lo:
        return pd.Series(0.0, index=objective.index)
    scaled = (objective - lo) / (hi - lo)
    return scaled if mode == "min" else 1 - scaled


def _sci(v: float, _pos: int) -> str:
    return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


def plot_trials(trials: pd.DataFrame, mode: str, path: Path) -> None:
    """Per hypothesis, tried (lr, kl_weight) coloured on one shared scale; the best trial starred."""
    hyps = grid_sorted(pd.unique(trials["hypothesis"]))
    ncols = min(5, len(hyps))
    nrows = math.ceil(len(hyps) / ncols)
    fig = new_figure(3.0 * ncols + 1.2, 2.9 * nrows + 0.9)
    axes = panel_grid(fig, len(hyps), ncols, sharex=True, sharey=True)
    norm = Normalize(0.0, 1.0)
    cmap = "viridis_r"
    for k, (ax, h) in enumerate(zip(axes, hyps)):
        sub = trials[trials["hypothesis"] == h]
        ok = sub[np.isfinite(sub["objective"].to_numpy(float))]
        failed = sub.drop(ok.index)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(h, fontsize=10)
        if len(failed):
            ax.scatter(failed["lr"], failed["kl_weight"], marker="x", color="grey")
        if len(ok):
            ax.scatter(ok["lr"], ok["kl_weight"], c=_scaled_objective(ok["objective"], mode), cmap=cmap, norm=norm,
                       s=30, edgecolor="black", linewidth=0.3)
            top = best_trial(ok, mode)
            ax.scatter([top["lr"]], [top["kl_weight"]], marker="*", s=200, facecolor="none", edgecolor="red")
        for axis in (ax.xaxis, ax.yaxis):
            # Labelled ticks at 1, 2 and 5 per decade: search ranges often span less than a decade.
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(_sci))
            axis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        if k % ncols == 0:
            ax.set_ylabel("kl_weight")
        if k >= len(hyps) - ncols:
            ax.set_xlabel("lr")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8,
                 label="objective within its hypothesis\n(0 = its best trial, 1 = its worst)")
    fig.suptitle("Tuning trials per hypothesis (red star: best objective; grey x: failed / no objective)")
    save(fig, path)
