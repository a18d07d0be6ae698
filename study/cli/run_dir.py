"""The run directory of `maskvae train --out DIR`: refuse a used one, continue it, or replace it whole.

A run directory holds exactly RUN_ENTRIES. Training into one that already holds a run would mix two
runs (the old newest checkpoint would be exported as the new model), so a used directory needs an
explicit `--resume` (continue that run) or `--overwrite` (a new run that replaces it).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from study.errors import UserInputError

CHECKPOINTS, METRICS, MODEL, CONFIG = "checkpoints", "metrics.jsonl", "model", "train_config.json"
RUN_ENTRIES = (CHECKPOINTS, METRICS, MODEL, CONFIG)


def run_entries(out: Path) -> list[str]:
    """The run files `out` already holds (empty for a new or unrelated directory)."""
    return [name for name in RUN_ENTRIES if (out / name).exists()]


def inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def check_out(out: Path, *, resume: Path | None, overwrite: bool) -> None:
    """Refuse, before anything is written, an `--out` that would mix two runs."""
    if out.exists() and not out.is_dir():
        raise UserInputError([f"--out {out}: is a file, not a directory"], title="bad run directory")
    used = run_entries(out) if out.is_dir() else []
    if not used:
        return
    if overwrite:
        if resume is not None and inside(resume, out):
            raise UserInputError([f"--resume {resume}: lies in the run that --overwrite replaces; pass one of them"],
                                 title="conflicting options")
        return
    if resume is None:
        raise UserInputError(
            [f"--out {out}: already holds a run ({', '.join(used)}); pass --resume to continue it, "
             "--overwrite to replace it, or choose another --out"], title="run directory in use")
    if not inside(resume, out):
        raise UserInputError(
            [f"--out {out}: already holds a run, and --resume {resume} is not one of its checkpoints; "
             "pass --overwrite to replace that run, or choose another --out"], title="run directory in use")


def trim_after(out: Path, epoch: int) -> list[Path]:
    """Continuing from `epoch`: drop the run's later checkpoints and metric lines, which the resumed
    run writes again (a later checkpoint left behind would be taken for the newest)."""
    from study.training.checkpoint import checkpoint_dirs

    dropped = [d for d in checkpoint_dirs(out / CHECKPOINTS) if int(d.name.split("-")[1]) > epoch]
    for directory in dropped:
        shutil.rmtree(directory)
    metrics = out / METRICS
    if metrics.is_file():
        lines = metrics.read_text().splitlines()
        kept = [line for line in lines if _epoch_of(line) is not None and _epoch_of(line) <= epoch]
        if len(kept) != len(lines):
            tmp = metrics.with_name(f".{METRICS}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, metrics)
    return dropped


def _epoch_of(line: str) -> float | None:
    """A metrics line's epoch; None for a line cut short by a crash, which the resumed run rewrites."""
    try:
        return float(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


def staging_dir(out: Path) -> Path:
    """Where an `--overwrite` run trains until it replaces `out` (same filesystem, so renames are atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".overwrite-", dir=out))


def replace_run(out: Path, staged: Path) -> None:
    """Swap the finished run in `staged` into `out`: every old run entry goes, then every new one comes.
    Each step is a rename, so the old and new runs never share a directory for more than a moment, and
    files in `out` that are not part of a run stay."""
    trash = Path(tempfile.mkdtemp(prefix=".replaced-", dir=out))
    try:
        for name in run_entries(out):
            os.replace(out / name, trash / name)
        for name in run_entries(staged):
            os.replace(staged / name, out / name)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
