"""Reading prepared data stays light: no image decoding, progress bars or face renderer on import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("PIL", "tqdm", "data.synthetic")


def _python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_shards_load_none_of_them() -> None:
    result = _python(f"import sys, data.shards; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["data.loader", "data.shards", "data.shard_reader", "data.manifest", "data.labels"])
def test_reading_modules_import_with_pil_tqdm_and_the_renderer_missing(module: str) -> None:
    # torch imports tqdm itself when it is installed, so sys.modules cannot tell who asked for it:
    # the modules are made unimportable instead, and importing must still succeed.
    result = _python(f"import sys; sys.modules.update(dict.fromkeys({HEAVY!r})); import {module}")
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_checks_can_fail() -> None:
    loaded = _python(f"import sys, data.prepare; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert "PIL" in loaded.stdout and "tqdm" in loaded.stdout
    blocked = _python(f"import sys; sys.modules.update(dict.fromkeys({HEAVY!r})); import data.prepare")
    assert blocked.returncode != 0 and "halted" in blocked.stderr
