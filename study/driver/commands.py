"""Commands the study prints for the user to run next, spelled so they run as printed."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def command(name: str) -> str:
    """A console script as the user can run it: its bare name when that is the one on PATH, else
    the path beside this interpreter (a virtual environment that is not activated)."""
    beside = Path(sys.executable).parent / name
    found = shutil.which(name)
    if found and (not beside.exists() or Path(found).resolve() == beside.resolve()):
        return name
    return str(beside) if beside.exists() else name
