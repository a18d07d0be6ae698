"""The one place that knows local paths from object-store URIs.

A location is a local path or a URI (``s3://bucket/prefix``, ``gs://...``, ``file://...``; an
endpoint may ride in the query string, ``s3://b/p?endpoint_override=host:port&scheme=http``).
Local paths use the OS (and can be memory-mapped); URIs go through pyarrow's filesystems. Joining
puts new parts before the query string, so an endpoint given in the URI survives every join.
pyarrow is imported only when a URI is touched: `maskvae study status` never pays for it.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_HASH_CHUNK = 1 << 22
_OBJECT_STORE_FILESYSTEMS = ("s3", "gcs")
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs")


def is_uri(location: str | os.PathLike[str]) -> bool:
    return "://" in os.fspath(location)


def is_object_store(location: str | os.PathLike[str]) -> bool:
    """Whether a location is an object-store URI (`s3://`, `gs://`, `gcs://`)."""
    return os.fspath(location).split("://", 1)[0] in OBJECT_STORE_SCHEMES if is_uri(location) else False


def local_path(location: str | os.PathLike[str]) -> str | None:
    """The path on this machine's filesystem that a location names (a plain path, or a `file://`
    URI); None for an object store or another remote filesystem."""
    text = os.fspath(location)
    if not is_uri(text):
        return text
    return urlparse(text).path if text.startswith("file://") else None


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """`base` with `parts` appended: a local path, or a URI whose query string stays at the end."""
    text = os.fspath(base)
    if not is_uri(text):
        return str(Path(text, *parts))
    head, sep, query = text.partition("?")
    tail = "/".join(part.strip("/") for part in parts if part)
    joined = f"{head.rstrip('/')}/{tail}" if tail else head
    return f"{joined}{sep}{query}"


def absolute(location: str | os.PathLike[str]) -> str:
    """Local paths made absolute (trials run elsewhere, with other working directories); URIs as given."""
    text = os.fspath(location)
    return text if is_uri(text) else str(Path(text).resolve())


@dataclass(frozen=True)
class Location:
    """A directory (or file) at a local path or behind a pyarrow filesystem."""

    fs: Any  # pyarrow.fs.FileSystem, or None for a local path
    path: str
    scheme: str = ""
    query: str = ""

    @classmethod
    def of(cls, where: str | os.PathLike[str]) -> "Location":
        text = os.fspath(where)
        if not is_uri(text):
            return cls(None, str(Path(text)))
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(text)
        scheme = text.split("://", 1)[0]
        query = text.partition("?")[2]
        return cls(filesystem, inner.rstrip("/"), scheme, query)

    @property
    def local(self) -> bool:
        return self.fs is None

    @property
    def uri(self) -> str:
        """The location as a string another process (or tool) can open again."""
        if self.local:
            return self.path
        return f"{self.scheme}://{self.path}" + (f"?{self.query}" if self.query else "")

    def join(self, *names: str) -> str:
        """Filesystem path of a child (for this location's own filesystem)."""
        names = tuple(name for name in names if name)
        if self.local:
            return os.path.join(self.path, *names)
        return "/".join([self.path, *(name.strip("/") for name in names)])

    def child(self, *names: str) -> "Location":
        return Location(self.fs, self.join(*names), self.scheme, self.query)

    def sibling_uri(self, inner_path: str) -> str:
        """A URI for another path on this location's filesystem (same scheme and endpoint)."""
        return Location(self.fs, inner_path.rstrip("/"), self.scheme, self.query).uri

    def _info(self, name: str = ""):
        return self.fs.get_file_info(self.join(name))

    def exists(self, name: str = "") -> bool:
        if self.local:
            return os.path.exists(self.join(name))
        from pyarrow import fs as pafs

        return self._info(name).type != pafs.FileType.NotFound

    def is_dir(self, name: str = "") -> bool:
        if self.local:
            return os.path.isdir(self.join(name))
        from pyarrow import fs as pafs

        return self._info(name).type == pafs.FileType.Directory

    def read_bytes(self, name: str = "") -> bytes:
        if self.local:
            return Path(self.join(name)).read_bytes()
        with self.fs.open_input_stream(self.join(name)) as handle:
            return handle.read()

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace one file whole: local writes go to a temp file renamed into place; an object-store
        put is atomic by itself."""
        target = self.join(name)
        if not self.local:
            self._make_parent(target)
            with self.fs.open_output_stream(target) as handle:
                handle.write(data)
            return
        directory = os.path.dirname(target) or "."
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, local: str | os.PathLike[str], name: str) -> None:
        """Copy a local file to `name` here (an object-store put is atomic by itself)."""
        if self.local:
            self.write_bytes(name, Path(local).read_bytes())
            return
        from pyarrow import fs as pafs

        self._make_parent(self.join(name))
        pafs.copy_files(os.fspath(local), self.join(name), destination_filesystem=self.fs)

    def download_file(self, name: str, destination: str | os.PathLike[str]) -> None:
        """Copy `name` to a local file, streamed (object-store files can be far larger than memory)."""
        if self.local:
            import shutil

            shutil.copyfile(self.join(name), destination)
            return
        from pyarrow import fs as pafs

        pafs.copy_files(self.join(name), os.fspath(destination), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())

    def _make_parent(self, target: str) -> None:
        # An object store needs no folders (and their marker objects would outlive a probe);
        # filesystems behind a URI (file://, hdfs://) do.
        if self.fs.type_name not in _OBJECT_STORE_FILESYSTEMS:
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)

    def delete(self, name: str) -> None:
        if self.local:
            Path(self.join(name)).unlink(missing_ok=True)
        else:
            self.fs.delete_file(self.join(name))

    def delete_tree(self, name: str) -> None:
        """Remove a directory and everything under it (nothing happens if it is missing)."""
        if self.local:
            shutil.rmtree(self.join(name), ignore_errors=True)
        elif self.is_dir(name):
            self.fs.delete_dir(self.join(name))

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names of this directory's entries matching a shell pattern (empty if it is missing)."""
        if self.local:
            if not os.path.isdir(self.path):
                return []
            entries = os.listdir(self.path)
        else:
            from pyarrow import fs as pafs

            selector = pafs.FileSelector(self.path, allow_not_found=True)
            entries = [info.base_name for info in self.fs.get_file_info(selector)]
        return sorted(name for name in entries if fnmatch.fnmatch(name, pattern))

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        opener = open(self.join(name), "rb") if self.local else self.fs.open_input_stream(self.join(name))
        with opener as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def open_arrow(self, name: str):
        """A readable Arrow file: memory-mapped when local, a random-access stream otherwise."""
        import pyarrow as pa

        if self.local:
            return pa.memory_map(self.join(name), "r")
        return self.fs.open_input_file(self.join(name))

    def download(self, destination: str | os.PathLike[str]) -> Path:
        """This directory's files in a local directory (itself when already local)."""
        if self.local:
            return Path(self.path)
        from pyarrow import fs as pafs

        destination = Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(self.path, str(destination), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return destination


def exists(location: str | os.PathLike[str]) -> bool:
    return Location.of(location).exists()


def writable_problem(field: str, location: str | os.PathLike[str]) -> str | None:
    """Why `location` could not be written, or None; leaves nothing behind but, on an object store,
    the prefix's empty folder marker (pyarrow keeps a folder when its last object is deleted)."""
    text = os.fspath(location)
    if is_uri(text):
        return _object_store_problem(field, text)
    probe = Path(text).absolute()
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{field}: {text}: cannot be created ({probe} is not a directory)"
    if not os.access(probe, os.W_OK):
        return f"{field}: {text}: not writable ({probe} is read-only)"
    return None


def readable_problem(field: str, location: str | os.PathLike[str], name: str) -> str | None:
    """Why `name` under an object-store `location` could not be read (bucket missing, endpoint
    unreachable, access denied, file absent), or None. Local paths are left to their readers."""
    text = os.fspath(location)
    if not is_uri(text):
        return None
    try:
        found = Location.of(text).exists(name)
    except Exception as error:  # any failure means the study could not read its input here
        return f"{field}: {text}: not reachable ({_reason(error)})"
    return None if found else f"{field}: {text}: no {name} there"


def _reason(error: BaseException) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
    return reason[:200]


def _object_store_problem(field: str, uri: str) -> str | None:
    """Write and delete a probe object under the prefix: reachable, bucket present, writable."""
    name = f".maskvae-probe-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        location = Location.of(uri)
        location.write_bytes(name, b"probe")
        location.delete(name)
    except Exception as error:  # any failure means the study could not store its results here
        return f"{field}: {uri}: not writable ({_reason(error)})"
    return None
