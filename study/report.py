"""The study report: REPORT.md plus figures, written atomically into the study directory."""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from study.ranking import METRIC_LABELS, METRICS, Ranking, hypothesis_name, winner_sentence

PAPER_REFERENCE_PATH = Path(__file__).with_name("paper_reference.csv")
TRIAL_COLUMNS = ("hypothesis", "trial_id", "kl_weight", "lr", "objective", "status")
REGION_TITLES = {
    "full": "full output",
    "face": "face region only (ground-truth mask)",
}
MASK_COLOURS = {True: "#1f77b4", False: "#ff7f0e"}
MASK_NAMES = {True: "mask", False: "no mask"}


# --------------------------------------------------------------------------- paper reference


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


# --------------------------------------------------------------------------- figures


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


def plot_trials(trials: pd.DataFrame, path: Path) -> None:
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
            points = ax.scatter(ok["lr"], ok["kl_weight"], c=ok["objective"], cmap="viridis_r", norm=norm, s=28)
            best = ok.loc[ok["objective"].idxmin()]
            ax.scatter([best["lr"]], [best["kl_weight"]], marker="*", s=180, facecolor="none", edgecolor="red")
            fig.colorbar(points, ax=ax, label="objective (lower is better)")
    fig.suptitle("Tuning trials per hypothesis (red star: best objective; grey x: failed/no objective)")
    _save(fig, path)


# --------------------------------------------------------------------------- markdown pieces


def _fmt(v: float, digits: int = 4) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _fmt_p(p: float) -> str:
    return "<1e-300" if p == 0 else f"{p:.2g}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ranking_markdown(r: Ranking, paper: pd.DataFrame | None) -> str:
    means = r.means()
    lo, hi = r.ci()
    header = ["Rank", "Hypothesis"]
    for m in METRICS:
        header.append(METRIC_LABELS[m])
        if paper is not None:
            header.append(f"{METRIC_LABELS[m]} (paper)")
    header += ["Mean rank", "Wins", "P(best)"]
    rows = []
    for _, o in r.overall.iterrows():
        h = o["hypothesis"]
        row = [str(o["rank"]), f"**{h}**" if h == r.dominant else h]
        for m in METRICS:
            if m in r.metrics:
                row.append(f"{means.at[h, m]:.4f} [{lo.at[h, m]:.4f}, {hi.at[h, m]:.4f}]")
            else:
                row.append("unavailable")
            if paper is not None:
                row.append(_fmt(float(paper.at[h, m]), 3) if h in paper.index else "—")
        row += [f"{o['mean_rank']:.2f}", str(o["wins"]), f"{o['prob_best']:.2f}"]
        rows.append(row)
    return _md_table(header, rows)


def _mask_effect_markdown(r: Ranking) -> str:
    if r.mask_effect.empty:
        return "No loss was run both with and without the mask in this study, so there is no mask effect to test."
    rows = [
        [
            e["loss"],
            METRIC_LABELS[e["metric"]],
            f"{e['diff']:+.4f}",
            f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]",
            _fmt_p(e["p_holm"]),
            e["better"],
        ]
        for _, e in r.mask_effect.iterrows()
    ]
    level = f"{1 - r.alpha:.0%}"
    return _md_table(["Loss", "Metric", "Δ (mask − no mask)", f"{level} CI", "Holm p", "Better"], rows)


def _study_info_markdown(info: dict[str, Any], rankings: dict[str, Ranking]) -> str:
    dataset = info.get("dataset") or {}
    size = dataset.get("image_size", "?")
    lines = [
        f"- Study: {info.get('name', '?')}",
        f"- Created: {info.get('created', '?')}",
        f"- Dataset: {dataset.get('source', '?')}, {size}×{size} px, content hash `{dataset.get('content_hash', '?')}`",
    ]
    first = next(iter(rankings.values()), None)
    if first is not None and not first.summary.empty:
        seeds = sorted(set(first.summary["n_seeds"]))
        lines.append(
            f"- Test images: {int(first.summary['n_images'].iloc[0])}; "
            f"seeds per hypothesis: {'/'.join(map(str, seeds))}"
        )
    if info.get("lpips_available", True):
        lines.append("- LPIPS: computed with AlexNet features")
    else:
        lines.append(
            "- LPIPS: **unavailable** (no AlexNet weights were found); it is reported as unavailable "
            "and left out of every rank, never estimated"
        )
    config = info.get("config")
    if isinstance(config, dict) and config:
        lines.append("- Configuration:\n\n```\n" + "\n".join(f"{k}: {v}" for k, v in config.items()) + "\n```")
    elif config:
        lines.append(f"- Configuration: {config}")
    return "\n".join(lines)


def _trials_markdown(trials: pd.DataFrame, figure: str | None) -> str:
    if trials.empty:
        return "No tuning trials were recorded."
    rows = []
    for h, sub in trials.groupby("hypothesis", sort=False):
        finite = sub[np.isfinite(sub["objective"].to_numpy(float))]
        status = ", ".join(f"{s} {n}" for s, n in sub["status"].astype(str).value_counts().items())
        if len(finite):
            best = finite.loc[finite["objective"].idxmin()]
            rows.append([str(h), str(len(sub)), status, f"{best['kl_weight']:.3g}", f"{best['lr']:.3g}",
                         f"{best['objective']:.4g}", str(best["trial_id"])])
        else:
            rows.append([str(h), str(len(sub)), status, "—", "—", "—", "—"])
    parts = [
        "Best trial per hypothesis (lowest objective):",
        _md_table(["Hypothesis", "Trials", "Status", "kl_weight", "lr", "Objective", "Trial"], rows),
    ]
    if figure:
        parts.append(f"![Tuning trials: lr vs kl_weight, coloured by objective]({figure})")
    cols = [c for c in ("hypothesis", "trial_id", "kl_weight", "lr", "objective", "status", "epochs") if c in trials]
    all_rows = [
        [_cell(v) for v in rec] for rec in trials[cols].itertuples(index=False, name=None)
    ]
    parts.append("<details><summary>All trials</summary>\n\n" + _md_table(cols, all_rows) + "\n\n</details>")
    return "\n\n".join(parts)


def _cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "—" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def _validate_trials(trials: pd.DataFrame | None) -> pd.DataFrame:
    if trials is None or trials.empty:
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    missing = [c for c in TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise ValueError(f"trials: missing column(s) {missing}")
    out = trials.copy()
    for c in ("kl_weight", "lr", "objective"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


# --------------------------------------------------------------------------- the report


def write_report(
    out_dir: Path,
    rankings: dict[str, Ranking],
    trials: pd.DataFrame,
    study_info: dict[str, Any],
    recon_grids: dict[str, Path] | None = None,
    paper_reference: pd.DataFrame | None = None,
) -> Path:
    """Write REPORT.md and figures/ under out_dir; return the REPORT.md path.

    Everything is built in a temporary folder inside out_dir and moved into place only when
    complete, so a failure leaves any earlier report untouched and no partial files behind.
    """
    if not rankings:
        raise ValueError("write_report: no rankings given")
    out_dir = Path(out_dir)
    trials = _validate_trials(trials)
    for h, p in (recon_grids or {}).items():
        if not Path(p).is_file():
            raise FileNotFoundError(f"reconstruction grid for {h!r} not found: {p}")
    created_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=out_dir))
    try:
        files = _build(tmp, rankings, trials, study_info, recon_grids or {}, paper_reference)
        fig_dir = out_dir / "figures"
        fig_dir.mkdir(exist_ok=True)
        for rel in files:
            os.replace(tmp / rel, out_dir / rel)
        report = out_dir / "REPORT.md"
        os.replace(tmp / "REPORT.md", report)
        return report
    except BaseException:
        if created_dir:
            # This call made out_dir, so everything in it is ours to remove.
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ordered_regions(rankings: dict[str, Ranking]) -> list[str]:
    return [r for r in REGION_TITLES if r in rankings] + [r for r in rankings if r not in REGION_TITLES]


def _build(
    tmp: Path,
    rankings: dict[str, Ranking],
    trials: pd.DataFrame,
    info: dict[str, Any],
    recon_grids: dict[str, Path],
    paper: pd.DataFrame | None,
) -> list[str]:
    """Render figures and REPORT.md into tmp; return the figure paths relative to tmp."""
    files: list[str] = []
    (tmp / "figures").mkdir()

    def figure(name: str, plot: Callable[..., None], *args: Any) -> str:
        rel = f"figures/{name}"
        plot(*args, tmp / rel)
        files.append(rel)
        return rel

    regions = _ordered_regions(rankings)
    any_r = rankings[regions[0]]
    level = f"{1 - any_r.alpha:.0%}"
    parts = [f"# Study report: {info.get('name', 'maskvae study')}", _study_info_markdown(info, rankings)]

    parts.append("## Result")
    parts += [f"- **{REGION_TITLES.get(g, g).capitalize()}**: {winner_sentence(rankings[g])}" for g in regions]
    parts.append(
        "All metrics are lower-is-better. Dominance and the Pareto front compare the metric means "
        f"(a hypothesis dominates when it is no worse on every available metric and better on one). "
        f"Intervals are {level} percentile bootstrap CIs over test images and seeds "
        f"({any_r.n_boot} replicates, the same resampled images for every hypothesis). Mean rank "
        "averages the per-metric ranks; P(best) is the bootstrap probability of the best mean rank."
    )

    for g in regions:
        r = rankings[g]
        parts.append(f"## Ranking: {REGION_TITLES.get(g, g)}")
        use_paper = paper if (paper is not None and g == "full") else None
        if use_paper is not None:
            parts.append(
                "The (paper) columns are the values published by Toledo & Antonelo (arXiv 2112.02139, "
                "CelebA 144×144, full output), read off their bar charts (about ±0.002–0.005)."
            )
        parts.append(_ranking_markdown(r, use_paper))
        notes = []
        if r.unavailable_metrics:
            notes.append(
                "Unavailable: " + ", ".join(METRIC_LABELS[m] for m in r.unavailable_metrics)
                + " (no scores; not used in any rank)."
            )
        if r.n_dropped_images:
            notes.append(f"{r.n_dropped_images} image(s) with a missing score were left out of every hypothesis.")
        if notes:
            parts.append(" ".join(notes))
        rel = figure(f"metrics_{_slug(g)}.png", plot_metric_bars, r)
        parts.append(f"![Per-metric means, {REGION_TITLES.get(g, g)}]({rel})")

    parts.append("## Mask vs no mask")
    parts.append(
        "Δ is the mean over test images of the paired difference mask − no mask, each side averaged "
        "over its seeds first; negative Δ favours the mask. The CI bootstraps those per-image "
        "differences; p is a two-sided Wilcoxon signed-rank test over images, Holm-adjusted across "
        f"all (loss, metric) tests of the region; 'Better' needs Holm p < {any_r.alpha:g}. The test "
        "treats each hypothesis's seed-averaged model as fixed: seed-to-seed spread shows in the "
        "ranking CIs, not here."
    )
    for g in regions:
        parts.append(f"### {REGION_TITLES.get(g, g).capitalize()}")
        parts.append(_mask_effect_markdown(rankings[g]))

    if paper is not None and "full" in rankings:
        parts.append("## Comparison with the published results")
        common = [h for h in rankings["full"].hypotheses if h in paper.index]
        if common:
            rel = figure("paper_comparison.png", plot_paper_comparison, rankings["full"], paper)
            parts.append(f"![This study vs the published values, full output]({rel})")
        else:
            parts.append("None of this study's hypotheses appears in the published table.")

    parts.append("## Tuning trials")
    trials_fig = figure("trials.png", plot_trials, trials) if not trials.empty else None
    parts.append(_trials_markdown(trials, trials_fig))

    if recon_grids:
        parts.append("## Reconstructions")
        parts.append("The same test faces for every hypothesis (rows: input, output, mask).")
        for h in [h for h in any_r.hypotheses if h in recon_grids] + [h for h in recon_grids if h not in any_r.hypotheses]:
            rel = f"figures/recon_{_slug(h)}.png"
            shutil.copyfile(recon_grids[h], tmp / rel)
            files.append(rel)
            parts.append(f"### {h}\n\n![Reconstructions, {h}]({rel})")

    (tmp / "REPORT.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return files
