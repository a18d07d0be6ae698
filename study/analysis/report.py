"""The study report: REPORT.md plus figures, written atomically into the study directory."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from study.analysis.figures import best_trial, plot_metric_bars, plot_paper_comparison, plot_trials
from study.analysis.ranking import METRIC_LABELS, METRICS, REGION_TITLES, Ranking, hypothesis_name
from study.analysis.tables import winner_sentence

PAPER_REFERENCE_PATH = Path(__file__).with_name("paper_reference.csv")
TRIAL_COLUMNS = ("hypothesis", "trial_id", "kl_weight", "lr", "objective", "status")


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


def _trials_markdown(trials: pd.DataFrame, figure: str | None, mode: str) -> str:
    if trials.empty:
        return "No tuning trials were recorded."
    rows = []
    for h, sub in trials.groupby("hypothesis", sort=False):
        finite = sub[np.isfinite(sub["objective"].to_numpy(float))]
        status = ", ".join(f"{s} {n}" for s, n in sub["status"].astype(str).value_counts().items())
        best = best_trial(finite, mode)
        if best is not None:
            rows.append([str(h), str(len(sub)), status, f"{best['kl_weight']:.3g}", f"{best['lr']:.3g}",
                         f"{best['objective']:.4g}", str(best["trial_id"])])
        else:
            rows.append([str(h), str(len(sub)), status, "—", "—", "—", "—"])
    parts = [
        f"Best trial per hypothesis ({'lowest' if mode == 'min' else 'highest'} objective):",
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
    mode = info.get("config", {}).get("mode", "min")
    trials_fig = figure("trials.png", plot_trials, trials, mode) if not trials.empty else None
    parts.append(_trials_markdown(trials, trials_fig, mode))

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
