"""The study report: REPORT.md plus figures, written atomically into the study directory.

It opens with the decoder view on the face region (the network's own output, no input pixel in it)
and its mask effect, then the composed views (the paper's protocol), then the comparison with the
paper, how the statistics work, the tuning trials and the reconstructions.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.analysis import report_sections as md
from study.analysis.figures import plot_factorial, plot_mask_effect, plot_metric_points, plot_paper_comparison
from study.analysis.figures_ranks import best_trial, plot_rank_intervals, plot_trials
from study.analysis.paper import PAPER_REFERENCE_PATH, load_paper_reference, magnitudes_comparable
from study.analysis.ranking import Ranking
from study.analysis.scores import grid_sorted
from study.analysis.tables import COMPOSED_CAVEAT, mask_effect_sentence, ordered, winner_sentence
from study.config.views import COMPOSED, PAPER, REGION_TITLES, VIEW_TITLES

__all__ = ["PAPER_REFERENCE_PATH", "load_paper_reference", "write_report"]
TRIAL_COLUMNS = ("hypothesis", "trial_id", "kl_weight", "lr", "objective", "status")


def _trials_markdown(trials: pd.DataFrame, figure: str | None, mode: str, note: str | None) -> str:
    if trials.empty:
        return "No tuning trials were recorded."
    rows = []
    for h in grid_sorted(pd.unique(trials["hypothesis"])):
        sub = trials[trials["hypothesis"] == h]
        finite = sub[np.isfinite(sub["objective"].to_numpy(float))]
        status = ", ".join(f"{s} {n}" for s, n in sub["status"].astype(str).value_counts().items())
        top = best_trial(finite, mode)
        if top is not None:
            rows.append([h, str(len(sub)), status, f"{top['kl_weight']:.3g}", f"{top['lr']:.3g}",
                         f"{top['objective']:.4g}", str(top["trial_id"])])
        else:
            rows.append([h, str(len(sub)), status, "—", "—", "—", "—"])
    parts = [note] if note else []
    parts += [f"Best trial per hypothesis ({'lowest' if mode == 'min' else 'highest'} objective):",
              md.md_table(["Hypothesis", "Trials", "Status", "kl_weight", "lr", "Objective", "Trial"], rows)]
    if figure:
        parts.append(f"![Tuning trials: lr vs kl_weight, coloured by objective within each hypothesis]({figure})")
    cols = [c for c in ("hypothesis", "trial_id", "kl_weight", "lr", "objective", "status", "epochs") if c in trials]
    all_rows = [[_cell(v) for v in rec] for rec in trials[cols].itertuples(index=False, name=None)]
    parts.append("<details><summary>All trials</summary>\n\n" + md.md_table(cols, all_rows) + "\n\n</details>")
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


def write_report(
    out_dir: Path,
    rankings: dict[Any, Ranking],
    trials: pd.DataFrame,
    study_info: dict[str, Any],
    recon_grids: dict[str, Path] | None = None,
    paper_reference: pd.DataFrame | None = None,
    combined_grid: Path | None = None,
    paper_magnitudes: bool | None = None,
) -> Path:
    """Write REPORT.md and figures/ under out_dir; return the REPORT.md path.

    `paper_magnitudes` says whether the paper's numbers are comparable in size (CelebA at 144 px);
    by default it is read from study_info's dataset. Everything is built in a temporary folder
    inside out_dir and moved into place only when complete, so a failure leaves any earlier report
    untouched and no partial files behind.
    """
    if not rankings:
        raise ValueError("write_report: no rankings given")
    out_dir = Path(out_dir)
    trials = _validate_trials(trials)
    for h, p in (recon_grids or {}).items():
        if not Path(p).is_file():
            raise FileNotFoundError(f"reconstruction grid for {h!r} not found: {p}")
    if combined_grid is not None and not Path(combined_grid).is_file():
        raise FileNotFoundError(f"combined reconstruction grid not found: {combined_grid}")
    if paper_magnitudes is None:
        dataset = study_info.get("dataset") or {}
        paper_magnitudes = magnitudes_comparable(dataset.get("source"), dataset.get("image_size"))
    created_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=out_dir))
    try:
        files = _build(tmp, ordered(rankings), trials, study_info, recon_grids or {}, combined_grid,
                       paper_reference, bool(paper_magnitudes))
        (out_dir / "figures").mkdir(exist_ok=True)
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


def _build(tmp: Path, ranks: list[Ranking], trials: pd.DataFrame, info: dict[str, Any], recon_grids: dict[str, Path],
           combined_grid: Path | None, paper: pd.DataFrame | None, magnitudes: bool) -> list[str]:
    """Render figures and REPORT.md into tmp; return the figure paths relative to tmp."""
    files: list[str] = []
    (tmp / "figures").mkdir()

    def figure(name: str, plot: Callable[..., None], *args: Any) -> str:
        rel = f"figures/{name}"
        plot(*args, tmp / rel)
        files.append(rel)
        return rel

    head = ranks[0]
    parts = [f"# Study report: {info.get('name', 'maskvae study')}", md.study_info_markdown(info, head)]
    parts.append("## Answer")
    parts.append(f"**{head.title.capitalize()}** ({md.VIEW_EXPLAINED.get(head.view, head.view)}): "
                 f"{winner_sentence(head)}.")
    parts.append(mask_effect_sentence(head))
    for r in ranks[1:]:
        parts.append(f"- {r.title.capitalize()}: {winner_sentence(r)}.")
    if any(r.view == COMPOSED for r in ranks):
        parts.append(COMPOSED_CAVEAT)

    for r in ranks:
        parts += _ranking_section(r, figure, paper if (magnitudes and (r.view, r.region) == PAPER)
                                  else None)

    if paper is not None:
        parts.append("## Direction of effects against the paper")
        dataset = info.get("dataset") or {}
        size = dataset.get("image_size", "?")
        parts.append(md.direction_markdown(ranks, paper, magnitudes, f"{dataset.get('source', '?')} at {size} px"))
        composed = next((r for r in ranks if (r.view, r.region) == PAPER), None)
        if magnitudes and composed is not None and any(h in paper.index for h in composed.hypotheses):
            rel = figure("paper_comparison.png", plot_paper_comparison, composed, paper)
            parts.append(f"![This study vs the published values, composed view, full output]({rel})")

    parts.append("## How the statistics work")
    parts.append(md.design_markdown(ranks))

    parts.append("## Tuning trials")
    mode = info.get("config", {}).get("mode", "min") if isinstance(info.get("config"), dict) else "min"
    trials_fig = figure("trials.png", plot_trials, trials, mode) if not trials.empty else None
    parts.append(_trials_markdown(trials, trials_fig, mode, info.get("tuning_note")))

    parts += _reconstructions_section(tmp, files, recon_grids, combined_grid)

    (tmp / "REPORT.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return files


def _reconstructions_section(tmp: Path, files: list[str], recon_grids: dict[str, Path],
                             combined_grid: Path | None) -> list[str]:
    """The reconstruction grids, copied into tmp (and added to `files`): one combined grid, or one per hypothesis."""
    parts: list[str] = []
    if combined_grid is not None or recon_grids:
        parts.append("## Reconstructions")
    if combined_grid is not None:
        rel = "figures/reconstructions.png"
        shutil.copyfile(combined_grid, tmp / rel)
        files.append(rel)
        parts.append("The same test faces for every hypothesis, with the decoder's own output and the composed "
                     f"output in separate rows.\n\n![Reconstructions of the same test faces, every hypothesis]({rel})")
    elif recon_grids:
        parts.append("The same test faces for every hypothesis.")
        for h in grid_sorted(recon_grids):
            rel = f"figures/recon_{_slug(h)}.png"
            shutil.copyfile(recon_grids[h], tmp / rel)
            files.append(rel)
            parts.append(f"### {h}\n\n![Reconstructions, {h}]({rel})")
    return parts


def _ranking_section(r: Ranking, figure: Callable[..., str], paper: pd.DataFrame | None) -> list[str]:
    key = _slug(r.key)
    region, view = REGION_TITLES.get(r.region, r.region), VIEW_TITLES.get(r.view, f"{r.view} view")
    parts = [f"## Ranking: {region}, {view}", f"Scores: {md.VIEW_EXPLAINED.get(r.view, r.view)}."]
    if r.view == COMPOSED:
        parts.append(COMPOSED_CAVEAT)
    if paper is not None:
        parts.append("The (paper) columns are the values published by Toledo & Antonelo (arXiv 2112.02139, CelebA "
                     "144×144, composed output, full image), read off their bar charts (about ±0.002–0.005).")
    parts += [winner_sentence(r) + ".", md.ranking_markdown(r, paper), md.ranking_notes(r)]
    rel = figure(f"metrics_{key}.png", plot_metric_points, r)
    parts.append(f"![Per-metric means, {r.title}]({rel})")
    rel = figure(f"ranks_{key}.png", plot_rank_intervals, r)
    parts.append(f"![Rank intervals (critical-difference diagram), {r.title}]({rel})")
    parts.append(f"### Mask effect: {r.title}")
    parts.append(mask_effect_sentence(r))
    if not r.mask_effect.empty:
        parts += [md.mask_effect_markdown(r), md.mask_effect_notes(r)]
        rel = figure(f"mask_effect_{key}.png", plot_mask_effect, r)
        parts.append(f"![Mask effect per loss, {r.title}]({rel})")
    if not r.claims_ok:
        parts.append("Per-seed means (each trained model's mean over the test images):")
        parts.append(md.seed_means_markdown(r))
    parts.append(f"### Loss × mask factorial: {r.title}")
    parts.append(md.factorial_markdown(r))
    if not r.factorial.empty:
        parts.append(md.factorial_notes(r))
        rel = figure(f"factorial_{key}.png", plot_factorial, r)
        parts.append(f"![Loss x mask factorial effects, {r.title}]({rel})")
    return parts
