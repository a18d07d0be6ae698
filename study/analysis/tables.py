"""The ranking as tables and sentences: what the terminal, the report and MLflow show."""
from __future__ import annotations

import pandas as pd

from study.analysis.effects import NOT_TESTED
from study.analysis.ranking import METRIC_LABELS, Ranking
from study.analysis.statistics import MIN_TEST_SEEDS
from study.config.views import PAIR_ORDER, PAPER

COMPOSED_CAVEAT = ("Mask models win the composed view largely by construction: they paste the input's own pixels "
                   "through their predicted mask, so the background (and part of every face pixel where the mask "
                   "is below 1) is scored on the input itself.")


def ordered(rankings: dict) -> list[Ranking]:
    """The rankings, headline (decoder view, face region) first, then the paper's order of views."""
    def place(r: Ranking) -> int:
        pair = (r.view, r.region)
        return PAIR_ORDER.index(pair) if pair in PAIR_ORDER else len(PAIR_ORDER)

    return sorted(rankings.values(), key=place)


def rank_label(row: pd.Series) -> str:
    """'1' or, for a tie, '1=' (tied hypotheses share the rank; no order is invented between them)."""
    return f"{int(row['rank'])}{'=' if row['tied'] else ''}"


def seeds_text(r: Ranking) -> str:
    return "/".join(map(str, r.seed_counts))


def winner_sentence(r: Ranking) -> str:
    """What the ranking can and cannot say about the best hypothesis, in a sentence or two."""
    top = r.overall[r.overall["rank"] == 1]
    best = ", ".join(top["hypothesis"])
    if len(r.overall) < 2:
        return f"Only one hypothesis: {best}"
    group = r.top_group
    if len(group) > 1:
        text = (f"Not distinguishable at the top: {', '.join(group)} (their bootstrap rank intervals overlap); "
                f"best mean rank: {best}")
    else:
        row = top.iloc[0]
        text = f"Best: {best} (rank interval {int(row['rank_low'])}-{int(row['rank_high'])}, separable from the rest)"
    if len(top) > 1:
        text += " (tied)"
    pareto = r.pareto.set_index("hypothesis")
    if r.dominant is not None:
        freq = float(pareto.at[r.dominant, "p_dominant"])
        text += f". {r.dominant} dominates every other hypothesis at the means"
        text += f" (in {freq:.0%} of bootstrap replicates)" if r.claims_ok else ""
    if not r.claims_ok:
        text += (f". With {seeds_text(r)} seed(s) per hypothesis (< {MIN_TEST_SEEDS}) seed-to-seed spread is "
                 + ("not assessed" if r.min_seeds < 2 else "barely estimable")
                 + ": P(best) and dominance frequencies are not reported")
    return text


def mask_effect_sentence(r: Ranking) -> str:
    """How the mask effect reads across the loss x metric family."""
    e = r.mask_effect
    if e.empty:
        return "No loss was run both with and without the mask, so there is no mask effect."
    n = len(e)
    favours = int((e["diff"] < 0).sum())
    consistent = int(((e["mask_better_pairs"] == e["pairs"]) | (e["mask_better_pairs"] == 0)).sum())
    if (e["better"] == NOT_TESTED).all():
        seeds = sorted(set(e["seeds_mask"]) | set(e["seeds_nomask"]))
        return (f"Mask effect: cannot be tested at the model level with {'/'.join(map(str, seeds))} seed(s) per side "
                f"(a test needs >= {MIN_TEST_SEEDS}). The estimate favours the mask on {favours} of {n} loss x metric "
                f"pairs; on {consistent} of {n} every seed pairing agrees in sign. Per-seed means are in the report.")
    counts = e["better"].value_counts()
    return (f"Mask effect (model level, Holm across {n} loss x metric tests, alpha {r.alpha:g}): the mask is "
            f"better on {int(counts.get('mask', 0))}, worse on {int(counts.get('nomask', 0))}, inconclusive on "
            f"{int(counts.get('inconclusive', 0))}; every seed pairing agrees in sign on {consistent} of {n}.")


def ranking_table(r: Ranking) -> pd.DataFrame:
    """One row per hypothesis in rank order with numeric mean/CI columns and a formatted one per metric."""
    means = r.means()
    lo, hi = r.ci()
    rows = []
    for _, o in r.overall.iterrows():
        h = o["hypothesis"]
        row = {"rank": int(o["rank"]), "rank_label": rank_label(o), "hypothesis": h, "loss": o["loss"],
               "mask": bool(o["mask"]), "mean_rank": float(o["mean_rank"]), "rank_low": int(o["rank_low"]),
               "rank_high": int(o["rank_high"]), "top_group": bool(o["top_group"]), "wins": int(o["wins"]),
               "p_best": float(o["p_best"]), "n_seeds": int(o["n_seeds"])}
        for m in r.metrics:
            half = (hi.at[h, m] - lo.at[h, m]) / 2
            row[m] = float(means.at[h, m])
            row[f"{m}_ci_low"] = float(lo.at[h, m])
            row[f"{m}_ci_high"] = float(hi.at[h, m])
            row[f"{m}_halfwidth"] = float(half)
            row[f"{m}_fmt"] = f"{means.at[h, m]:.4f} ± {half:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _p_best(r: Ranking, value: float) -> str:
    return f"{value:.2f}" if r.claims_ok else "—"


def format_ranking_table(r: Ranking) -> str:
    """Plain-text ranking table for the terminal."""
    table = ranking_table(r)
    header = ["rank", "interval", "hypothesis", *(METRIC_LABELS[m] for m in r.metrics), "mean rank", "P(best)"]
    body = [[row["rank_label"], f"{row['rank_low']}-{row['rank_high']}",
             row["hypothesis"] + (" *" if row["top_group"] and len(r.top_group) > 1 else ""),
             *(row[f"{m}_fmt"] for m in r.metrics), f"{row['mean_rank']:.2f}", _p_best(r, row["p_best"])]
            for _, row in table.iterrows()]
    widths = [max(len(c), *(len(b[k]) for b in body)) for k, c in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if k == 2 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    level = f"{1 - r.alpha:.0%}"
    out = [f"Ranking, {r.title}: {r.n_images} test images x {seeds_text(r)} seed(s) per hypothesis; "
           f"mean ± half-width of the seed-aware {level} CI; lower is better",
           line(header), line(["-" * w for w in widths]), *(line(b) for b in body)]
    notes = ["rank: ties share a rank (1=); interval: bootstrap rank interval"]
    if len(r.top_group) > 1:
        notes.append("*: not distinguishable from the best")
    out.append("; ".join(notes))
    if r.unavailable_metrics:
        names = ", ".join(METRIC_LABELS[m] for m in r.unavailable_metrics)
        out.append(f"unavailable (no scores, not ranked): {names}")
    if r.n_dropped_images:
        out.append(f"{r.n_dropped_images} image(s) with missing scores left out")
    out.append(winner_sentence(r))
    return "\n".join(out)


def format_headline(rankings: dict) -> str:
    """The terminal's answer: the decoder view on the face region and its mask effect first, then the
    composed full-output view (the paper's protocol) with why mask models win it."""
    ranks = ordered(rankings)
    if not ranks:
        return "No rankings."
    head = ranks[0]
    parts = [format_ranking_table(head), mask_effect_sentence(head)]
    composed = next((r for r in ranks[1:] if (r.view, r.region) == PAPER), None)
    if composed is not None:
        parts += ["", format_ranking_table(composed), COMPOSED_CAVEAT]
    rest = [r.title for r in ranks[1:] if r is not composed]
    if rest:
        parts.append(f"Also in the report: {'; '.join(rest)}.")
    return "\n".join(parts)
