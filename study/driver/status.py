"""`maskvae study status`: trials per hypothesis and phase, from the study's own files only (no Ray,
no torch, no MLflow), so it answers in well under two seconds."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from study.config.study import StudyConfig
from study.driver import ledger as trial_ledger
from study.driver.layout import StudyLayout
from study.driver.state import load_study
from study.search.objective import best
from study.search.trials import Phase, trial_outcome


def status_summary(directory: Path) -> dict[str, Any]:
    """phase -> hypothesis -> {"counts": Counter of outcomes, "best": best objective or None}."""
    state, config = load_study(directory)
    ledger = trial_ledger.load(StudyLayout(directory).ledger_file)
    interrupted = state.phase != Phase.DONE and not trial_ledger.driver_alive(ledger)
    summary: dict[str, Any] = {}
    for entry in ledger.get("trials", {}).values():
        outcome = _outcome(entry, interrupted)
        cell = summary.setdefault(entry["phase"], {}).setdefault(entry["hypothesis"], {"counts": Counter(), "values": []})
        cell["counts"][outcome] += 1
        if entry.get("objective") is not None and not entry.get("failed"):
            cell["values"].append(entry["objective"])
    for phase in summary.values():
        for cell in phase.values():
            cell["best"] = best(cell.pop("values"), lambda v: v, config.objective.mode)
    return {"state": state, "config": config, "phases": summary, "interrupted": interrupted}


def _outcome(entry: dict[str, Any], interrupted: bool) -> str:
    failed, status = bool(entry.get("failed")), entry.get("status", "PENDING")
    if interrupted and not failed and status in ("RUNNING", "PENDING", "PAUSED"):
        return "interrupted"
    return trial_outcome(status, failed)


def print_status(directory: Path) -> dict[str, Any]:
    summary = status_summary(directory)
    state, config = summary["state"], summary["config"]
    print(f"study {state.name} ({state.study_id}) in {directory}: phase {state.phase}"
          + ("  (no driver running: interrupted)" if summary["interrupted"] else ""))
    for phase, planned in ((Phase.TUNE, config.search.trials_per_hypothesis), (Phase.FINAL, config.final.seeds)):
        cells = summary["phases"].get(phase)
        if not cells:
            continue
        print(f"{phase}:")
        for hypothesis in [h.name for h in config.hypotheses()]:
            cell = cells.get(hypothesis, {"counts": Counter(), "best": None})
            tally = ", ".join(f"{n} {s}" for s, n in sorted(cell["counts"].items())) or "not started"
            extra = f"  best {config.objective.metric} {cell['best']:.4f}" if cell["best"] is not None else ""
            print(f"  {hypothesis:<14} {sum(cell['counts'].values())}/{planned}: {tally}{extra}")
    if state.phase == Phase.DONE:
        print(f"report: {StudyLayout(directory).report}")
    else:
        print(f"resume with: maskvae study resume {directory}")
    return summary
