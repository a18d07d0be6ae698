"""Writing and reading tensor files safely: atomic writes, and loads that never unpickle code.

Each caller names the error it raises (a model file, a checkpoint), so messages stay one line that
names the file whatever the caller.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any], error: type[Exception]) -> None:
    """Write next to the target, then rename: a crash never leaves a half-written file under the real name."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as failure:
        raise error(f"{path}: cannot write here ({failure.strerror or failure})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as failure:  # torch reports a failed write as RuntimeError
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(failure, "strerror", None) or _first_line(failure)
        raise error(f"{path}: writing failed ({reason}; disk full?); earlier files are untouched") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path, error: type[Exception]) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle), error)


def safe_torch_load(path: Path, error: type[Exception]) -> Any:
    """torch.load with weights_only=True (tensors and plain containers); every failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as failure:
        raise error(f"{path}: refused to load: it holds objects other than tensors and plain containers "
                    f"(a file that can run code is never loaded) [{type(failure).__name__}]") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as failure:
        raise error(f"{path}: truncated or corrupted ({type(failure).__name__}: {_first_line(failure)})") from None
