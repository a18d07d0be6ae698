"""`maskvae predict`: find the model (a path, a runs:/ or models:/ URI, or a study's champion) and the
tracking store it lives in, check everything the user named, then reconstruct.

Every check runs before anything is written: an input that cannot be used is a one-line error and
no output directory, no downloaded model and no tracking store (MLflow creates an empty SQLite
file for a store that does not exist) is left behind.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from study.driver.state import StudyState
from study.errors import UserInputError, first_line
from study.search.trials import Phase
from study.tracking.uris import SQLITE_PREFIX, sqlite_path
from study.training.predict import output_names, predict as predict_with, read_images

TRACKING_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class Tracking:
    uri: str | None  # None: MLflow's default store
    origin: str  # where the URI came from, as the user would name it


def is_uri(model: str) -> bool:
    return "://" in model or model.startswith(("models:", "runs:"))


def champion_uri(state: StudyState) -> str:
    """The study's own registered model (named per study, so studies never share a champion)."""
    return f"models:/{state.model_name or state.name}@champion"


def choose_tracking(tracking_uri: str | None, study: StudyState | None, study_dir: Path | None) -> Tracking:
    """--tracking-uri, else the study's recorded store, else $MLFLOW_TRACKING_URI, else MLflow's default."""
    if tracking_uri:
        return Tracking(tracking_uri, "--tracking-uri")
    if study is not None and study.tracking_uri:
        return Tracking(study.tracking_uri, f"--study {study_dir} (its recorded tracking URI)")
    if os.environ.get(TRACKING_ENV):
        return Tracking(os.environ[TRACKING_ENV], TRACKING_ENV)
    return Tracking(None, "MLflow's default store")


def _local_store_path(uri: str) -> tuple[Path, str] | None:
    """The file or folder a local tracking URI names, and which of the two it must be."""
    if uri.startswith(SQLITE_PREFIX):
        path = sqlite_path(uri)
        return (Path(path), "file") if path is not None else None
    if uri.startswith("file:"):
        return Path(uri[len("file:"):].removeprefix("//")), "folder"
    if "://" not in uri:
        return Path(uri), "folder"
    return None


def check_tracking(tracking: Tracking, timeout: float = 10.0) -> str:
    """The resolved tracking URI, once the store is known to exist and answer."""
    from study.tracking.store import TrackingUnavailableError, preflight, resolved_tracking_uri

    uri = resolved_tracking_uri(tracking.uri)
    local = _local_store_path(uri)
    hint = f"pass --tracking-uri, --study DIR or set {TRACKING_ENV}"
    if local is not None:
        path, kind = local
        exists = path.is_file() if kind == "file" else path.is_dir()
        if not exists:
            raise UserInputError([f"{tracking.origin}: tracking store {uri} does not exist ({path} not found); {hint}"],
                                 title="no tracking store")
    try:
        return preflight(uri, timeout)
    except TrackingUnavailableError as error:
        reason = error.problems[0].removeprefix(f"mlflow.tracking_uri: {uri}: ")
        raise UserInputError([f"{tracking.origin}: tracking store {uri} unreachable ({reason})"],
                             title="no tracking store") from None


def fetch_model(model: str, tracking: Tracking, scratch: Path) -> Path:
    """A local model directory: the path itself, or the logged model downloaded from the tracking
    store into `scratch`."""
    if not is_uri(model):
        path = Path(model)
        if not path.exists():
            raise UserInputError([f"--model {model}: no such model directory"], title="model not found")
        if (path / "model" / "model.json").is_file():
            return path / "model"  # a `maskvae train` run directory
        if not (path / "model.json").is_file():
            raise UserInputError([f"--model {model}: not a model directory (no model.json; a `maskvae train` run "
                                  "keeps its model in RUN/model)"], title="model not found")
        return path
    uri = check_tracking(tracking)
    from study.tracking.store import download_model

    try:
        return download_model(model, uri, into=scratch)
    except Exception as error:  # MLflow's own errors (unknown name, alias, run or artifact): say which, in one line
        raise UserInputError([f"--model {model}: not found in {uri} ({first_line(error)[:200]})"],
                             title="model not found") from None


def predict(model: str | None, images: list[Path], out: Path, *, tracking_uri: str | None = None,
            study_dir: Path | None = None, resize: str | None = None) -> list[Path]:
    study = StudyState.load(study_dir) if study_dir is not None else None
    if model is None:
        if study is None:
            raise UserInputError(["--model: required unless --study DIR names a study with a champion"],
                                 title="no model")
        if study.phase != Phase.DONE:
            raise UserInputError([f"--study {study_dir}: has no champion yet (phase {study.phase}); finish it with "
                                  f"`maskvae study resume {study_dir}` or pass --model"], title="no model")
        model = champion_uri(study)
    if out.exists() and not out.is_dir():
        raise UserInputError([f"--out {out}: is a file, not a directory"], title="bad output directory")
    output_names(images)
    decoded = read_images(images)
    tracking = choose_tracking(tracking_uri, study, study_dir)
    with tempfile.TemporaryDirectory(prefix="maskvae-model-") as scratch:  # a downloaded model is not kept
        model_dir = fetch_model(model, tracking, Path(scratch))
        return predict_with(model_dir, images, out, resize=resize, decoded=decoded)
