"""The ranking as tables and sentences: what the terminal, the report and MLflow show."""
from __future__ import annotations

import pandas as pd

from study.analysis.effects import NOT_TESTED
from study.analysis.ranking import DOMINANCE_LEVEL, METRIC_LABELS, Ranking
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
    text += _dominance_clause(r)
    if not r.any_claims:
        text += (f". With {seeds_text(r)} seed(s) per hypothesis (< {MIN_TEST_SEEDS}) seed-to-seed spread is "
                 + ("not assessed" if r.min_seeds < 2 else "barely estimable")
                 + ": P(best) and dominance frequencies are not reported")
    elif r.short:
        text += (f". {short_text(r)} (fewer than {MIN_TEST_SEEDS}): P(best) and dominance frequencies are not "
                 "reported for it; they are for the others")
    return text


def short_text(r: Ranking) -> str:
    """'l2/nomask has 2' or 'a has 2, b has 1': the hypotheses short of seeds."""
    counts = r.overall.set_index("hypothesis")["n_seeds"]
    return ", ".join(f"{h} has {int(counts[h])} seed{'s' if counts[h] != 1 else ''}" for h in r.short)


def _dominance_clause(r: Ranking) -> str:
    """'Dominates' only at DOMINANCE_LEVEL of the bootstrap replicates; a dominance at the point means
    alone is not evidence (with nothing to find, some hypothesis often dominates at the means)."""
    if r.reliably_dominant is not None:
        freq = float(r.pareto.set_index("hypothesis").at[r.reliably_dominant, "p_dominant"])
        return f". {r.reliably_dominant} dominates every other hypothesis (in {freq:.0%} of bootstrap replicates)"
    if r.dominant is None or len(r.overall) < 2:
        return ""
    if r.dominant in r.short:
        return (f". No hypothesis dominates reliably ({r.dominant} is lowest on every metric at the means, but its "
                "seeds are too few to say how often)")
    freq = float(r.pareto.set_index("hypothesis").at[r.dominant, "p_dominant"])
    return (f". No hypothesis dominates reliably ({r.dominant} is lowest on every metric at the means, in {freq:.0%} "
            f"of bootstrap replicates; {DOMINANCE_LEVEL:.0%} needed)")


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
    tested = e[e["better"] != NOT_TESTED]
    counts = tested["better"].value_counts()
    text = (f"Mask effect (model level, Holm across {len(tested)} loss x metric tests, alpha {r.alpha:g}): the mask "
            f"is better on {int(counts.get('mask', 0))}, worse on {int(counts.get('nomask', 0))}, inconclusive on "
            f"{int(counts.get('inconclusive', 0))}; every seed pairing agrees in sign on {consistent} of {n}.")
    if len(tested) < n:
        text += (f" Tested: {', '.join(_losses(tested))}. Not tested (fewer than {MIN_TEST_SEEDS} seeds on a side): "
                 + "; ".join(_untested_loss(e, loss) for loss in _losses(e[e["better"] == NOT_TESTED])) + ".")
    return text


def _losses(e: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(e["loss"]))


def _untested_loss(e: pd.DataFrame, loss: str) -> str:
    row = e[e["loss"] == loss].iloc[0]
    return f"{loss} ({int(row['seeds_mask'])} mask / {int(row['seeds_nomask'])} no-mask seeds)"


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


def _p_best(r: Ranking, hypothesis: str, value: float) -> str:
    return "—" if hypothesis in r.short else f"{value:.2f}"


def format_ranking_table(r: Ranking) -> str:
    """Plain-text ranking table for the terminal."""
    table = ranking_table(r)
    header = ["rank", "interval", "hypothesis", *(METRIC_LABELS[m] for m in r.metrics), "mean rank", "P(best)"]
    body = [[row["rank_label"], f"{row['rank_low']}-{row['rank_high']}",
             row["hypothesis"] + (" *" if row["top_group"] and len(r.top_group) > 1 else ""),
             *(row[f"{m}_fmt"] for m in r.metrics), f"{row['mean_rank']:.2f}",
             _p_best(r, row["hypothesis"], row["p_best"])]
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


def interval_label(frame: pd.DataFrame, alpha: float) -> str:
    """The header of an effects table's interval column: Holm-adjusted over the tested family, or
    unadjusted when nothing in it was tested."""
    m = int((frame["better"] != NOT_TESTED).sum())
    level = f"{1 - alpha:.0%}"
    if m == 0:
        return f"{level} CI (unadjusted)"
    note = "; † untested row, unadjusted" if m < len(frame) else ""
    return f"Holm-adjusted {level} CI ({m} tests{note})"


def interval_cell(x: pd.Series) -> str:
    """A row's interval: the Holm-adjusted one where it was tested, else the unadjusted one marked †
    (or unmarked when no row was tested and the header says so)."""
    if x["better"] != NOT_TESTED:
        return f"[{x['holm_low']:+.4f}, {x['holm_high']:+.4f}]"
    return f"[{x['ci_low']:+.4f}, {x['ci_high']:+.4f}]"
