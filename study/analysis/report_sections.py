"""REPORT.md's sections as markdown text, one function per piece."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from study.analysis.effects import NOT_TESTED
from study.analysis.figures import loss_order
from study.analysis.paper import direction_agreement, ranking_agreement
from study.analysis.ranking import DOMINANCE_LEVEL, METRIC_LABELS, METRICS, Ranking
from study.analysis.statistics import MIN_TEST_SEEDS
from study.analysis.tables import interval_cell, interval_label, rank_label, seeds_text, short_text
from study.config.views import COMPOSED, DECODER

VIEW_EXPLAINED = {
    DECODER: "the network's own output, with no input pixel in it, scored on the ground-truth face region only",
    COMPOSED: "the paper's protocol: mask models paste the input through their predicted mask "
                "(output · mask + input · (1 − mask)); models without a mask are scored on their output",
}


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def fmt(v: float, digits: int = 4) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


P_FLOOR = 1e-4  # below this a p-value from a handful of trained models says only "very small"


def fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "—"
    return f"< {P_FLOOR:.0e}".replace("e-0", "e-") if p < P_FLOOR else f"{p:.2g}"


def ranking_markdown(r: Ranking, paper: pd.DataFrame | None) -> str:
    means = r.means()
    lo, hi = r.ci()
    header = ["Rank", "Rank interval", "Hypothesis"]
    for m in METRICS:
        header.append(METRIC_LABELS[m])
        if paper is not None:
            header.append(f"{METRIC_LABELS[m]} (paper)")
    header += ["Mean rank", "Wins", "P(best)", "Pareto front"]
    pareto = r.pareto.set_index("hypothesis")
    rows = []
    for _, o in r.overall.iterrows():
        h = o["hypothesis"]
        name = f"**{h}**" if o["rank"] == 1 else h
        if len(r.top_group) > 1 and o["top_group"]:
            name += " ≈"
        row = [rank_label(o), f"{int(o['rank_low'])}–{int(o['rank_high'])}", name]
        for m in METRICS:
            row.append(f"{means.at[h, m]:.4f} [{lo.at[h, m]:.4f}, {hi.at[h, m]:.4f}]" if m in r.metrics
                       else "unavailable")
            if paper is not None:
                row.append(fmt(float(paper.at[h, m]), 3) if h in paper.index else "—")
        assessed = h not in r.short
        row += [f"{o['mean_rank']:.2f}", str(o["wins"]), f"{o['p_best']:.2f}" if assessed else "—",
                _front_cell(pareto.loc[h], assessed)]
        rows.append(row)
    return md_table(header, rows)


def _front_cell(p: pd.Series, assessed: bool) -> str:
    """'dominant' only at DOMINANCE_LEVEL of the replicates; a point dominance below it is a front member."""
    reliable = assessed and p["dominant"] and p["p_dominant"] >= DOMINANCE_LEVEL
    text = "dominant" if reliable else "yes" if p["on_front"] else "no"
    if assessed:
        text += f" ({p['p_dominant' if reliable else 'p_front']:.0%})"
    return text


def ranking_notes(r: Ranking) -> str:
    level = f"{1 - r.alpha:.0%}"
    notes = [f"Means with their seed-aware {level} CI (unadjusted, per hypothesis). These intervals include the "
             "image-sampling variance that every hypothesis shares, so two overlapping intervals do not mean two "
             "hypotheses are indistinguishable: differences are paired by image, and the mask-effect table and "
             "figure (paired differences) are the comparison. Rank: the standing by mean rank over the available "
             "metrics; "
             "equal mean ranks share a rank (shown as 1=) rather than being ordered by input."
             f" Rank interval: {level} interval of the rank over {r.n_boot} crossed-bootstrap replicates."]
    notes.append("Pareto front: no other hypothesis is at least as good on every metric and better on one, at the "
                 "means" + (" (in brackets: the share of bootstrap replicates in which that still holds)"
                            if r.any_claims else "") +
                 f"; 'dominant' (better than every other hypothesis) only where that holds in >= {DOMINANCE_LEVEL:.0%} "
                 "of replicates" + (f"; with fewer than {MIN_TEST_SEEDS} seeds the bootstrap frequencies are not "
                                    "reported" if r.short else "") + ".")
    if len(r.top_group) > 1:
        notes.append(f"≈: not distinguishable from the best ({', '.join(r.top_group)}: their rank intervals overlap).")
    if not r.any_claims:
        notes.append(f"P(best) is not reported: with {seeds_text(r)} seed(s) per hypothesis it would mostly measure "
                     "which seed the bootstrap drew.")
    elif r.short:
        notes.append(f"P(best) is not reported for {', '.join(r.short)} ({short_text(r)}; with fewer than "
                     f"{MIN_TEST_SEEDS} it would mostly measure which seed the bootstrap drew); it is for the others.")
    if r.metric_agreement is not None:
        low, high = r.metric_agreement
        notes.append(f"The metrics order the hypotheses alike (Spearman {low:.2f} to {high:.2f} between metrics), so "
                     "the mean rank counts closely related evidence several times, not independent confirmations.")
    if r.unavailable_metrics:
        notes.append("Unavailable: " + ", ".join(METRIC_LABELS[m] for m in r.unavailable_metrics)
                     + " (no scores; not used in any rank).")
    if r.n_dropped_images:
        notes.append(f"{r.n_dropped_images} image(s) with a missing score were left out of every hypothesis.")
    return " ".join(notes)


def mask_effect_markdown(r: Ranking) -> str:
    e = r.mask_effect
    if e.empty:
        return "No loss was run both with and without the mask, so there is no mask effect."
    rows = []
    for loss in loss_order(e["loss"]):
        for _, x in e[e["loss"] == loss].iterrows():
            rows.append([loss, METRIC_LABELS[x["metric"]], f"{x['diff']:+.4f}", _interval(e, x),
                         fmt_p(x["p_holm"]), x["better"], f"{x['mask_better_pairs']}/{x['pairs']}"])
    return md_table(["Loss", "Metric", "Δ (mask − no mask)", interval_label(e, r.alpha), "Holm p", "Better",
                     "Seed pairings favouring mask"], rows)


def _interval(frame: pd.DataFrame, x: pd.Series) -> str:
    mixed = (frame["better"] != NOT_TESTED).any() and x["better"] == NOT_TESTED
    return interval_cell(x) + (" †" if mixed else "")


def mask_effect_notes(r: Ranking) -> str:
    e = r.mask_effect
    text = ("Δ is the difference of the two hypotheses' means (each averaged over its seeds and the same test "
            "images); negative favours the mask. Its interval and test use the same t statistic, whose standard "
            "error holds image sampling and seed-to-seed spread, on the degrees of freedom the seeds carry. The "
            "interval is Holm-adjusted: each is at the level of its own Holm step (between the unadjusted and the "
            "Bonferroni level over the tested family), so it excludes zero exactly when Holm p is below alpha. "
            "The seed pairings column counts the (mask seed, no-mask seed) pairs whose per-model means "
            "favour the mask.")
    if not e.empty and (e["better"] == NOT_TESTED).all():
        text += (f" **The effect cannot be tested at the model level**: the replicate for \"does the mask help "
                 f"training?\" is the trained model, and a test needs at least {MIN_TEST_SEEDS} per side; this study "
                 f"has {seeds_text(r)}. The per-seed means below show what the seeds did.")
    elif not e.empty:
        n = int((e["better"] != NOT_TESTED).sum())
        text += (f" 'Better' needs Holm p < {r.alpha:g} across the {n} tested loss × metric pairs of this view and "
                 "region.")
    return text


def seed_means_markdown(r: Ranking) -> str:
    """Per hypothesis and metric, each seed's mean over test images (seed order), in grid order."""
    sm = r.seed_means
    rows = []
    for h in r.hypotheses:
        sub = sm[sm["hypothesis"] == h]
        seeds = list(dict.fromkeys(sub["seed"]))
        row = [h, ", ".join(map(str, seeds))]
        for m in r.metrics:
            vals = sub[sub["metric"] == m].set_index("seed").loc[seeds, "mean"]
            row.append(" / ".join(f"{v:.4f}" for v in vals))
        rows.append(row)
    return md_table(["Hypothesis", "Seeds", *(METRIC_LABELS[m] for m in r.metrics)], rows)


def factorial_markdown(r: Ranking) -> str:
    f = r.factorial
    if f.empty:
        return "No loss was run both with and without the mask, so there is no factorial to estimate."
    rows = []
    for metric in r.metrics:
        for _, x in f[f["metric"] == metric].iterrows():
            label = {"mask": "mask (all losses)", "loss": f"loss {x['level']}"}.get(x["effect"], f"{x['level']} × mask")
            rows.append([METRIC_LABELS[metric], label, f"{x['estimate']:+.4f}", _interval(f, x),
                         fmt_p(x["p_holm"])])
    return md_table(["Metric", "Effect", "Estimate", interval_label(f, r.alpha), "Holm p"], rows)


FACTORIAL_NOTE = ("Mask: mask − no mask averaged over the losses run both ways. Loss l: l's mean over mask on/off "
                  "minus the average over losses. l × mask: l's mask effect minus the average mask effect (the "
                  "interaction: does the mask help this loss more or less than the others?). Negative favours the "
                  "mask / the loss. Holm p is shown only when every hypothesis involved has at least "
                  f"{MIN_TEST_SEEDS} seeds; Holm runs across every tested effect and metric of the table.")


def factorial_notes(r: Ranking) -> str:
    """FACTORIAL_NOTE, and which losses a short hypothesis kept out of the factorial."""
    if not r.factorial_left_out:
        return FACTORIAL_NOTE
    kept = [level for level in dict.fromkeys(r.factorial["level"]) if level != "all losses"]
    return (FACTORIAL_NOTE + f" **Left out: {', '.join(r.factorial_left_out)}** (a hypothesis of that loss has "
            f"fewer than {MIN_TEST_SEEDS} seeds); the factorial runs on the other losses"
            + (f" ({', '.join(kept)})" if kept else "") + ", so 'all losses' means those.")


def direction_markdown(rankings: list[Ranking], paper: pd.DataFrame, comparable: bool, dataset: str) -> str:
    """Sign of the mask effect per loss x metric against the paper's, and Kendall's tau of the rankings."""
    tables = [direction_agreement(r, paper) for r in rankings]
    tables = [t for t in tables if not t.empty]
    parts = ["The paper (composed view, full output, CelebA at 144 px) against this study, per loss × metric: the "
             "sign of the mask effect (− favours the mask). 'clear' marks study effects with Holm p below alpha "
             "(the mask-effect table's correction); an agreement inside the noise is no agreement."]
    if not comparable:
        parts.append(f"**Caveat:** this study ran on {dataset}, not CelebA at 144 px: the directions can be "
                     "compared, the magnitudes cannot.")
    if tables:
        keys = [(t["view"].iloc[0], t["region"].iloc[0]) for t in tables]
        merged = {}
        for t in tables:
            for x in t.itertuples(index=False):
                merged.setdefault((x.loss, x.metric), {"paper": x.paper_diff})[(x.view, x.region)] = x
        rows = []
        losses = loss_order(loss for loss, _ in merged)
        for (loss, metric) in sorted(merged, key=lambda k: (losses.index(k[0]), METRICS.index(k[1]))):
            cells = merged[(loss, metric)]
            row = [loss, METRIC_LABELS[metric], f"{cells['paper']:+.3f}"]
            for key in keys:
                x = cells.get(key)
                row.append("—" if x is None else
                           f"{x.study_diff:+.4f} {'agree' if x.agree else 'disagree'}{' (clear)' if x.clear else ''}")
            rows.append(row)
        parts.append(md_table(["Loss", "Metric", "Paper Δ", *(f"{v} view, {g}" for v, g in keys)], rows))
        summary = [f"{v} view, {g}: {int(t['agree'].sum())} of {len(t)} agree ({int((t['agree'] & t['clear']).sum())} "
                   "clearly)" for (v, g), t in zip(keys, tables)]
        parts.append("Sign agreement: " + "; ".join(summary) + ".")
    taus = pd.concat([ranking_agreement(r, paper) for r in rankings], ignore_index=True)
    if not taus.empty:
        names = list(dict.fromkeys(taus["ranking"]))
        rows = [[f"{v} view, {g}", str(int(sub["n_hypotheses"].iloc[0])),
                 *(fmt(float(sub.set_index("ranking")["kendall_tau"].get(n, np.nan)), 2) for n in names)]
                for (v, g), sub in taus.groupby(["view", "region"], sort=False)]
        parts.append("Kendall's τ between the paper's ordering of the hypotheses and this study's (1: same order, "
                     "−1: reversed):")
        parts.append(md_table(["Scores", "Hypotheses", *(METRIC_LABELS.get(n, n) for n in names)], rows))
    return "\n\n".join(parts)


def design_markdown(rankings: list[Ranking]) -> str:
    r = rankings[0]
    seeds = seeds_text(r)
    lines = [
        "Each hypothesis's best configuration was retrained with several seeds; every trained model scored the "
        "same test images. The design is therefore **crossed**: images are crossed with models (comparisons "
        "between hypotheses are paired by image) and seeds are nested in hypotheses.\n",
        "- **Intervals** for means, the mask effect and the factorial effects are t intervals on a standard error "
        "with two parts: image sampling (the per-image contrast of seed-averaged scores) and seed sampling (the "
        "between-seed variance of each hypothesis's per-model means), less the residual both contain. Their "
        "degrees of freedom are what the seeds carry: Welch–Satterthwaite over the seed parts alone, between "
        "S − 1 and the sum of S − 1 over the hypotheses involved (2 to 4 for a mask effect with 3 seeds per "
        "side). The test uses the same t. Effects tables and figures show Holm-adjusted intervals (each at the "
        "level of its Holm step, so it excludes zero exactly when Holm p < alpha); per-hypothesis means show "
        "unadjusted ones, which include the image variance "
        "every hypothesis shares.",
        "- **Ranks, P(best), Pareto frequencies** come from a crossed bootstrap: each replicate resamples the test "
        "images once for all hypotheses and, independently per hypothesis, redraws its seed-to-seed error (a wild "
        "bootstrap: random Gaussian weights on the seeds' deviations, scaled to a t with S − 1 degrees of freedom, "
        "since resampling 3 seeds with replacement never reaches beyond the observed seed means). 'Dominant' is "
        f"said only of a hypothesis that dominates in >= {DOMINANCE_LEVEL:.0%} of the replicates.",
        f"- **Tests** of the mask effect are at the model level (the trained model is the replicate) and need at "
        f"least {MIN_TEST_SEEDS} seeds per side; Holm's correction runs across the tested loss × metric pairs of "
        "each view and region. p-values below 1e-4 are shown as < 1e-4.",
    ]
    lines += _seed_lines(r, seeds)
    return "\n".join(lines)


# Measured on simulated null and planted-effect studies (tests/test_statistics_null.py, README "Statistics").
POWER_NOTE = ("after Holm's correction across 25 loss × metric tests, a mask effect of 4 seed standard deviations "
              "is detected with probability about 0.06 at 3 seeds per side, 0.67 at 5 and 0.99 at 8; 80% power "
              "needs about 6 seeds at 4 seed SDs and about 11 at 2.5")


def _seed_lines(r: Ranking, seeds: str) -> list[str]:
    if r.min_seeds < 2 and not r.any_claims:
        return [f"- **This study has {seeds} seed(s) per hypothesis**: seed-to-seed spread cannot be assessed, "
                "so every interval covers image sampling only and no claim about training can be made."]
    if not r.any_claims:
        return [f"- **This study has {seeds} seeds per hypothesis**: seed spread enters the intervals (which "
                "are correspondingly wide) but the mask effect cannot be tested at the model level, and "
                "P(best) and dominance frequencies are not reported."]
    lines = [f"- **This study has {seeds} seeds per hypothesis**: enough for model-level tests, though they detect "
             f"only effects that are large next to the seed-to-seed spread ({POWER_NOTE}); an inconclusive result "
             "is not evidence of no effect."]
    if r.short:
        e = r.mask_effect
        tested = int((e["better"] != NOT_TESTED).sum()) if not e.empty else 0
        lines.append(f"- **Short of seeds: {short_text(r)}.** Only what involves it goes untested: {tested} of "
                     f"{len(e)} mask-effect tests ran, the factorial "
                     + (f"leaves out {', '.join(r.factorial_left_out)}" if r.factorial_left_out else
                        "includes every loss")
                     + ", and P(best) is reported for every other hypothesis.")
    return lines


def study_info_markdown(info: dict[str, Any], r: Ranking) -> str:
    dataset = info.get("dataset") or {}
    size = dataset.get("image_size", "?")
    lines = [f"- Study: {info.get('name', '?')}", f"- Created: {info.get('created', '?')}",
             f"- Dataset: {dataset.get('source', '?')}, {size}×{size} px, content hash "
             f"`{dataset.get('content_hash', '?')}`",
             f"- Test images: {r.n_images}; seeds per hypothesis: {seeds_text(r)}"]
    if info.get("lpips_available", True):
        lines.append("- LPIPS: computed with AlexNet features")
    else:
        lines.append("- LPIPS: **unavailable** (no AlexNet weights were found); it is reported as unavailable and "
                     "left out of every rank, never estimated")
    config = info.get("config")
    if isinstance(config, dict) and config:
        lines.append("- Configuration:\n\n```\n" + "\n".join(f"{k}: {v}" for k, v in config.items()) + "\n```")
    elif config:
        lines.append(f"- Configuration: {config}")
    return "\n".join(lines)
