"""Reaching an MLflow tracking store: the client (SQLite tuned for one writer and many readers),
the preflight check, and fetching a logged model.

A SQLite store is switched to write-ahead logging with `synchronous=NORMAL`: a commit then costs no
fsync (one trial-epoch's metrics went from 5.5 to 4.0 ms, benchmarks/tracking.py), and `mlflow ui`
reading the file no longer blocks the study writing it. A power cut can lose the last commits but
never corrupts the file, and Ray's record restores them through `sync-mlflow`. WAL needs a local
filesystem: a store shared between machines belongs on a server (the cluster configs use PostgreSQL).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from data import storage
from study.errors import UserInputError, first_line
from study.tracking.uris import sqlite_path

T = TypeVar("T")
# maskvae prints its own summary; a URL per closed run (MLflow's default with a server) buries it.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


_sqlite_tuned = False


def _tune_sqlite_connections() -> None:
    """WAL + synchronous=NORMAL on every SQLite connection this process opens (MLflow's engine included)."""
    global _sqlite_tuned
    if _sqlite_tuned:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _write_ahead_log(connection, _record) -> None:
        if isinstance(connection, sqlite3.Connection):
            cursor = connection.cursor()
            try:
                # An in-memory database answers "memory" and stays as it is.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError:
                pass  # a read-only store can still be read (status, model download) in its own mode
            finally:
                cursor.close()

    _sqlite_tuned = True


class TrackingUnavailableError(UserInputError):
    def __init__(self, uri: str, reason: str):
        super().__init__([f"mlflow.tracking_uri: {uri}: {reason}"], title="MLflow tracking server unreachable")


# MLflow logs its schema setup at INFO on every new store ("Creating initial MLflow database
# tables...", alembic's migration steps); preflight prints one line of its own instead.
_DB_SETUP_LOGGERS = ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration")


def _quiet_db_setup() -> None:
    for name in _DB_SETUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def client_for(uri: str | None):
    from mlflow import MlflowClient

    if resolved_tracking_uri(uri).startswith("sqlite:"):
        _tune_sqlite_connections()
        _quiet_db_setup()
    return MlflowClient(tracking_uri=uri)


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores and in-memory SQLite)."""
    path = sqlite_path(uri)
    return Path(path) if path is not None else None


def resolved_tracking_uri(uri: str | None) -> str:
    import mlflow

    if uri:
        return uri
    return mlflow.get_tracking_uri()


def _call_with_timeout(fn: Callable[[], T], timeout: float) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as error:  # re-raised in the caller's thread
            box["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


SQLITE_FIRST_USE_S = 300.0


def preflight(uri: str | None, timeout: float = 10.0) -> str:
    """Fail fast (within `timeout`) when the tracking store cannot be reached; returns the resolved URI."""
    resolved = resolved_tracking_uri(uri)
    # MLflow's own HTTP retries would outlast the preflight budget.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(timeout))))
    database = sqlite_file(resolved)
    try:
        with _first_use_lock(database):
            new_store = database is not None and not database.exists()
            # The timeout is for a server that does not answer. A local SQLite file always answers, but
            # creating MLflow's tables in a new one takes 10-30 s on a busy 2-core machine: not a failure.
            limit = timeout if database is None else max(timeout, SQLITE_FIRST_USE_S)
            _call_with_timeout(lambda: client_for(resolved).search_experiments(max_results=1), limit)
    except Exception as error:  # any failure here means "cannot track": say which and stop
        raise TrackingUnavailableError(resolved, f"{error.__class__.__name__}: {first_line(error)[:300]}") from None
    if new_store:
        print(f"MLflow: new tracking store {database.resolve()}")
    return resolved


def experiment_artifact_location(uri: str | None, experiment: str) -> str | None:
    """Where an existing experiment keeps its artifacts; None when there is no such experiment yet."""
    found = client_for(resolved_tracking_uri(uri)).get_experiment_by_name(experiment)
    return found.artifact_location if found is not None else None


def artifact_probe_uri(root: str) -> str:
    """`root` as the storage module should open it to reach what MLflow reaches: MLflow's S3 client
    also takes its endpoint from MLFLOW_S3_ENDPOINT_URL, which pyarrow does not read."""
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    if not endpoint or not root.startswith("s3://") or "?" in root:
        return root
    from urllib.parse import urlparse

    parsed = urlparse(endpoint)
    return f"{root}?endpoint_override={parsed.netloc}&scheme={parsed.scheme or 'https'}"


@contextlib.contextmanager
def _first_use_lock(database: Path | None):
    """Two studies starting on a new SQLite store would both create MLflow's tables, and the second
    fails ("table ... already exists"): the first contact is serialised per database file, with a
    lock in the temp directory (released by the OS if the process dies)."""
    if database is None:
        yield
        return
    import fcntl
    import hashlib
    import tempfile

    key = hashlib.sha1(str(database.resolve()).encode()).hexdigest()[:16]
    try:
        handle = open(Path(tempfile.gettempdir()) / f"maskvae-mlflow-{key}.lock", "a")
    except OSError:  # another user's lock file: go on unlocked
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def download_model(uri: str, tracking_uri: str | None, into: Path) -> Path:
    """A local directory holding an exported model, from a path, `runs:/` or `models:/name@alias` URI
    (downloaded under `into`, which the caller removes)."""
    if not storage.is_uri(uri) and not uri.startswith(("models:", "runs:")):
        return Path(uri)
    import mlflow

    client = client_for(resolved_tracking_uri(tracking_uri))
    if uri.startswith("models:/"):
        name, _, ref = uri[len("models:/"):].partition("@")
        if ref:
            version = client.get_model_version_by_alias(name, ref)
        else:
            name, _, number = uri[len("models:/"):].partition("/")
            version = client.get_model_version(name, number)
        uri = version.source
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=resolved_tracking_uri(tracking_uri),
                                                    dst_path=str(into)))
