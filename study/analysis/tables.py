"""The ranking as tables and sentences: what the terminal, the report and MLflow show."""
from __future__ import annotations

import pandas as pd

from study.analysis.ranking import METRIC_LABELS, Ranking



def winner_sentence(r: Ranking) -> str:
    """One sentence naming the dominant hypothesis, or the Pareto front and the best overall rank."""
    if r.dominant is not None:
        return f"Dominant hypothesis: {r.dominant}"
    top = r.overall.iloc[0]
    return (
        f"No hypothesis dominates; Pareto front: {', '.join(r.pareto_front)}; "
        f"best overall rank: {top['hypothesis']} (P(best)={top['prob_best']:.2f})"
    )


def ranking_table(r: Ranking) -> pd.DataFrame:
    """One row per hypothesis in rank order with numeric mean/CI columns and a formatted one per metric."""
    means = r.means()
    lo, hi = r.ci()
    info = r.summary.drop_duplicates("hypothesis").set_index("hypothesis")
    rows = []
    for _, o in r.overall.iterrows():
        h = o["hypothesis"]
        row = {
            "rank": int(o["rank"]),
            "hypothesis": h,
            "loss": info.at[h, "loss"],
            "mask": bool(info.at[h, "mask"]),
            "mean_rank": float(o["mean_rank"]),
            "wins": int(o["wins"]),
            "prob_best": float(o["prob_best"]),
        }
        for m in r.metrics:
            half = (hi.at[h, m] - lo.at[h, m]) / 2
            row[m] = float(means.at[h, m])
            row[f"{m}_ci_low"] = float(lo.at[h, m])
            row[f"{m}_ci_high"] = float(hi.at[h, m])
            row[f"{m}_halfwidth"] = float(half)
            row[f"{m}_fmt"] = f"{means.at[h, m]:.4f} ± {half:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)


def format_ranking_table(r: Ranking) -> str:
    """Plain-text ranking table for the terminal."""
    table = ranking_table(r)
    n_img = int(r.summary["n_images"].iloc[0])
    seeds = sorted(set(r.summary["n_seeds"]))
    header = ["rank", "hypothesis", *(METRIC_LABELS[m] for m in r.metrics), "P(best)"]
    body = [
        [str(row["rank"]), row["hypothesis"], *(row[f"{m}_fmt"] for m in r.metrics), f"{row['prob_best']:.2f}"]
        for _, row in table.iterrows()
    ]
    widths = [max(len(c), *(len(b[k]) for b in body)) for k, c in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if k != 1 else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    level = f"{1 - r.alpha:.0%}"
    out = [
        f"Ranking, {r.region} region: {n_img} test images x {'/'.join(map(str, seeds))} seed(s); "
        f"mean ± half-width of the {level} bootstrap CI; lower is better",
        line(header),
        line(["-" * w for w in widths]),
        *(line(b) for b in body),
    ]
    if r.unavailable_metrics:
        names = ", ".join(METRIC_LABELS[m] for m in r.unavailable_metrics)
        out.append(f"unavailable (no scores, not ranked): {names}")
    if r.n_dropped_images:
        out.append(f"{r.n_dropped_images} image(s) with missing scores left out")
    out.append(winner_sentence(r))
    return "\n".join(out)
