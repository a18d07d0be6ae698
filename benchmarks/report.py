"""The results as a terminal/Markdown table and as JSON (written atomically)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .common import Row

COLUMNS = ("benchmark", "measure", "maskvae", "baseline", "ratio", "target", "met")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def _met(row: Row) -> str:
    return {True: "yes", False: "NO", None: "-"}[row.met]


def cells(row: Row) -> list[str]:
    measure = row.measure + (f" [{row.note}]" if row.note else "")
    baseline = f"{_number(row.baseline, row.unit)} ({row.baseline_name})" if row.baseline is not None else (
        row.baseline_name or "-")
    ratio = f"{row.ratio:.3g}x" if row.ratio is not None else "-"
    return [row.benchmark, measure, _number(row.value, row.unit), baseline, ratio,
            row.target.describe() if row.target else "-", _met(row)]


def markdown(rows: list[Row]) -> str:
    """A GitHub Markdown table (also readable in a terminal)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def document(rows: list[Row], machine: dict[str, Any], command: str, seconds: float, quick: bool,
             errors: dict[str, str]) -> dict[str, Any]:
    return {"command": command, "quick": quick, "seconds": round(seconds, 1), "machine": machine,
            "all_met": all(row.met is not False for row in rows) and not errors,
            "rows": [row.to_json() for row in rows], "errors": errors}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(payload, out, indent=2, default=str)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
