"""Reading a tracking URI without MLflow: the one parser of `sqlite:///` URIs."""
from __future__ import annotations

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> str | None:
    """The database path of a `sqlite:///` URI as written (relative or absolute, query dropped);
    None for other stores and for in-memory SQLite."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    path = uri[len(SQLITE_PREFIX):].split("?", 1)[0]
    return path if path and path != ":memory:" else None
