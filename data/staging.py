"""Datasets on an object store, staged once per node into a verified local cache.

Read straight from `s3://...`, every trial process would hold its own in-memory copy of every
shard (pyarrow reads remote files into memory; CelebA at 144 px is about 17 GB). Staged, the
shards are local files that every process on the node memory-maps, sharing the page cache.

The cache lives under `$MASKVAE_DATA_CACHE` (default: `<system temp dir>/maskvae-data`), one
directory per dataset named by the manifest's content hash, so a changed dataset is a new entry
and an unchanged one is downloaded once per node whatever URI points at it. Several trials on a
node may start at once: the first to take the entry's lock (an `flock`, released by the kernel if
its holder dies) downloads into a temporary directory, checks every shard's SHA-256 against the
manifest, and renames the directory into place; the others wait on the lock and find it there.
A directory under its hash was therefore complete and verified when it appeared; each use also
checks that every file still has the size it was staged with (a temp-dir cleaner, a full disk).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from data.errors import DatasetError, ShardError
from data.manifest import MANIFEST, Manifest, content_hash
from data.storage import Location, is_uri

CACHE_ENV = "MASKVAE_DATA_CACHE"
_SIZES = ".staged.json"  # file -> size in bytes, written last, before the rename


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "maskvae-data")


def staged(location: str | os.PathLike[str]) -> Path:
    """A local directory holding the dataset at `location`: the path itself when it is local, else
    this node's verified copy of the object-store dataset (downloaded on first use)."""
    text = os.fspath(location)
    if not is_uri(text):
        return Path(text)
    remote = Location.of(text)
    raw = remote.read_bytes(MANIFEST)
    manifest = _manifest(raw, remote.join(MANIFEST))
    root = cache_root()
    target = root / manifest.content_hash
    if _complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{manifest.content_hash}.lock"):
        if _complete(target):  # staged by another process while this one waited
            return target
        _discard_leftovers(root, manifest.content_hash, target)
        scratch = Path(tempfile.mkdtemp(prefix=f".{manifest.content_hash}.tmp-", dir=root))
        try:
            _download(remote, manifest, raw, scratch)
            os.rename(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return target


def _manifest(raw: bytes, where: str) -> Manifest:
    try:
        manifest = Manifest.from_dict(json.loads(raw.decode("utf-8")), where)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"invalid manifest {where}: {error}") from error
    # The hash names the cache entry: a manifest whose hash does not cover its shards would poison it.
    if content_hash(manifest.shards) != manifest.content_hash:
        raise DatasetError(f"{where}: content_hash does not match the shard hashes")
    return manifest


def _download(remote: Location, manifest: Manifest, raw_manifest: bytes, scratch: Path) -> None:
    local = Location(None, str(scratch))
    sizes = {}
    for info in manifest.shards:
        remote.download_file(info.file, scratch / info.file)
        actual = local.sha256(info.file)
        if actual != info.sha256:
            raise ShardError(remote.join(info.file), f"sha256 {actual} does not match the manifest's {info.sha256}")
        sizes[info.file] = (scratch / info.file).stat().st_size
    (scratch / MANIFEST).write_bytes(raw_manifest)
    sizes[MANIFEST] = len(raw_manifest)
    (scratch / _SIZES).write_text(json.dumps(sizes, sort_keys=True))


def _complete(target: Path) -> bool:
    try:
        sizes = json.loads((target / _SIZES).read_text())
        return all((target / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, AttributeError):
        return False


def _discard_leftovers(root: Path, key: str, target: Path) -> None:
    """Under the lock nobody else stages this entry: its temp dirs are from killed processes, and a
    target that failed `_complete` is damaged."""
    for leftover in root.glob(f".{key}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if target.exists():
        # Moved aside first, so a reader that still maps its files keeps them until it closes them.
        aside = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-damaged-", dir=root))
        os.rename(target, aside / "entry")
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
