"""The prepared format: a manifest plus per-split Arrow IPC shard files.

``OUT/manifest.json`` and ``OUT/{split}-{k:05d}.arrow``; each shard holds columns ``id`` (string),
``image`` (fixed-size binary, H*W*3 bytes, HWC uint8) and ``mask`` (fixed-size binary, H*W bytes,
0/1). Shards are uncompressed IPC *files*, so local ones are memory-mapped and read without a copy.

Paths are local paths or URIs (``s3://``, ``gs://``, ``file://`` ...). URIs go through
``pyarrow.fs``; as object stores have no atomic rename, a URI output is uploaded shard by shard and
the manifest last, so a dataset without a manifest is never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from data.errors import DatasetError, ShardError
from data.storage import Location
from data.storage import join as storage_join

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST = "manifest.json"
DEFAULT_SHARD_ROWS = 4096
_SKIPPED_LISTED = 1000  # names kept in the manifest; the count is always exact


def shard_schema(image_size: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("image", pa.binary(image_size * image_size * 3), nullable=False),
            pa.field("mask", pa.binary(image_size * image_size), nullable=False),
        ]
    )


@dataclass(frozen=True)
class ShardInfo:
    split: str
    file: str
    rows: int
    sha256: str


@dataclass
class Manifest:
    """What a prepared dataset holds; stored as ``manifest.json``."""

    source: str
    image_size: int
    counts: dict[str, int]
    mask_classes: list[int]
    shards: list[ShardInfo]
    content_hash: str
    created: str
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    seed: int | None = None
    partition: str | None = None  # how rows were assigned to splits
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. the crop applied
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Manifest:
        """Build from parsed JSON; every malformed field is reported with ``where``."""
        if not isinstance(raw, dict):
            raise DatasetError(f"{where}: manifest must be a JSON object")
        problems: list[str] = []

        def need(name: str, kind: type | tuple[type, ...]) -> Any:
            value = raw.get(name)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                problems.append(f"{where}: field '{name}' missing or not {_kind_name(kind)}")
                return None
            return value

        version = need("format_version", int)
        if version is not None and version != FORMAT_VERSION:
            problems.append(f"{where}: format_version {version} is not supported (expected {FORMAT_VERSION})")
        source = need("source", str)
        size = need("image_size", int)
        if size is not None and size <= 0:
            problems.append(f"{where}: field 'image_size' must be positive")
        counts = need("counts", dict)
        if counts is not None and (
            set(counts) != set(SPLITS) or not all(isinstance(v, int) and v >= 0 for v in counts.values())
        ):
            problems.append(f"{where}: field 'counts' must map {list(SPLITS)} to non-negative integers")
        classes = need("mask_classes", list)
        if classes is not None and not all(isinstance(c, int) for c in classes):
            problems.append(f"{where}: field 'mask_classes' must be a list of integers")
        content_hash = need("content_hash", str)
        created = need("created", str)
        shards_raw = need("shards", list)
        shards: list[ShardInfo] = []
        for i, s in enumerate(shards_raw or []):
            try:
                info = ShardInfo(split=s["split"], file=s["file"], rows=s["rows"], sha256=s["sha256"])
            except (TypeError, KeyError) as exc:
                problems.append(f"{where}: shards[{i}] lacks {exc}")
                continue
            if (
                info.split not in SPLITS
                or not isinstance(info.rows, int)
                or not isinstance(info.file, str)
                or not isinstance(info.sha256, str)
            ):
                problems.append(f"{where}: shards[{i}] is malformed: {s!r}")
            elif "/" in info.file or "\\" in info.file or info.file.startswith("."):
                problems.append(f"{where}: shards[{i}] file name {info.file!r} must be a plain name")
            else:
                shards.append(info)
        if not problems and counts is not None:
            for split in SPLITS:
                rows = sum(s.rows for s in shards if s.split == split)
                if rows != counts[split]:
                    problems.append(f"{where}: counts[{split}]={counts[split]} but its shards hold {rows} rows")
        if problems:
            raise DatasetError(f"invalid manifest {where}", problems)
        return cls(
            format_version=version,
            source=source,
            image_size=size,
            counts=dict(counts),
            mask_classes=list(classes),
            shards=shards,
            content_hash=content_hash,
            created=created,
            skipped=int(raw.get("skipped", 0)),
            skipped_files=list(raw.get("skipped_files", [])),
            seed=raw.get("seed"),
            partition=raw.get("partition"),
            notes=dict(raw.get("notes", {})),
        )

    def shards_of(self, split: str) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == split]


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def content_hash(shards: Sequence[ShardInfo]) -> str:
    """One hash for the whole dataset, over the shard names and hashes in manifest order."""
    h = hashlib.sha256()
    for s in shards:
        h.update(f"{s.file} {s.sha256}\n".encode())
    return h.hexdigest()


# --- writing ---------------------------------------------------------------------------------


class DatasetWriter:
    """Write a prepared dataset atomically.

    Rows go to a temp dir next to OUT; on a clean exit the manifest is written and the dir is
    renamed to OUT. On any exception the temp dir is removed and OUT is left as it was.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        source: str,
        image_size: int,
        mask_classes: Iterable[int],
        shard_rows: int = DEFAULT_SHARD_ROWS,
        overwrite: bool = False,
        seed: int | None = None,
        partition: str | None = None,
        notes: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size: expected a positive integer, got {image_size!r}")
        if not isinstance(shard_rows, int) or shard_rows <= 0:
            raise ValueError(f"shard_rows: expected a positive integer, got {shard_rows!r}")
        self.out = Location.of(out)
        self.source = source
        self.image_size = image_size
        self.mask_classes = sorted(int(c) for c in mask_classes)
        self.shard_rows = shard_rows
        self.overwrite = overwrite
        self.seed = seed
        self.partition = partition
        self.notes = dict(notes or {})
        self.schema = shard_schema(image_size)
        self.manifest: Manifest | None = None
        self._tmp: Path | None = None
        self._pending: dict[str, list[tuple[list[str], np.ndarray, np.ndarray]]] = {s: [] for s in SPLITS}
        self._pending_rows = {s: 0 for s in SPLITS}
        self._shards: list[ShardInfo] = []
        self._ids: set[str] = set()
        self._skipped: list[str] = []
        self._skipped_count = 0

    # context management

    def __enter__(self) -> DatasetWriter:
        self._check_target()
        if self.out.local:
            target = Path(self.out.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
            self._tmp.mkdir()
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix="maskvae-shards-"))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self._tmp is not None and self._tmp.exists():
                shutil.rmtree(self._tmp, ignore_errors=True)

    # rows

    def add(self, split: str, ids: Sequence[str], images: np.ndarray, masks: np.ndarray) -> None:
        """Append rows: images (n, H, W, 3) uint8, masks (n, H, W) uint8 in {0, 1}."""
        if self._tmp is None:
            raise RuntimeError("DatasetWriter.add called outside its 'with' block")
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        n, s = len(ids), self.image_size
        images, masks = np.asarray(images), np.asarray(masks)
        if images.dtype != np.uint8 or images.shape != (n, s, s, 3):
            raise ValueError(f"images: expected uint8 {(n, s, s, 3)}, got {images.dtype} {images.shape}")
        if masks.dtype != np.uint8 or masks.shape != (n, s, s):
            raise ValueError(f"masks: expected uint8 {(n, s, s)}, got {masks.dtype} {masks.shape}")
        if n and masks.max() > 1:
            raise ValueError("masks: values must be 0 or 1")
        ids = [str(i) for i in ids]
        dupes = sorted({i for i, k in Counter(ids).items() if k > 1 or i in self._ids})
        if dupes:
            raise DatasetError("duplicate ids in the dataset", [f"id {d!r} written twice" for d in dupes[:20]])
        self._ids.update(ids)
        self._pending[split].append((ids, images, masks))
        self._pending_rows[split] += n
        while self._pending_rows[split] >= self.shard_rows:
            self._flush(split, self.shard_rows)

    def skip(self, names: Iterable[str]) -> None:
        """Record files left out (named in the manifest, up to a limit; always counted)."""
        for name in names:
            self._skipped_count += 1
            if len(self._skipped) < _SKIPPED_LISTED:
                self._skipped.append(str(name))

    @property
    def counts(self) -> dict[str, int]:
        written = {s: sum(i.rows for i in self._shards if i.split == s) for s in SPLITS}
        return {s: written[s] + self._pending_rows[s] for s in SPLITS}

    def _flush(self, split: str, rows: int) -> None:
        """Write the first ``rows`` pending rows of ``split`` as one shard."""
        ids: list[str] = []
        images: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        need = rows
        pending = self._pending[split]
        while need:
            b_ids, b_img, b_mask = pending[0]
            take = min(need, len(b_ids))
            ids += b_ids[:take]
            images.append(b_img[:take])
            masks.append(b_mask[:take])
            if take == len(b_ids):
                pending.pop(0)
            else:
                pending[0] = (b_ids[take:], b_img[take:], b_mask[take:])
            need -= take
        self._pending_rows[split] -= rows
        name = f"{split}-{sum(1 for s in self._shards if s.split == split):05d}.arrow"
        path = self._tmp / name
        s = self.image_size
        image_arr = np.ascontiguousarray(np.concatenate(images)).reshape(-1)
        mask_arr = np.ascontiguousarray(np.concatenate(masks)).reshape(-1)
        columns = [
            pa.array(ids, type=pa.string()),
            pa.FixedSizeBinaryArray.from_buffers(pa.binary(s * s * 3), rows, [None, pa.py_buffer(image_arr)]),
            pa.FixedSizeBinaryArray.from_buffers(pa.binary(s * s), rows, [None, pa.py_buffer(mask_arr)]),
        ]
        batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.schema) as writer:
            writer.write_batch(batch)
        self._shards.append(ShardInfo(split, name, rows, Location(None, str(self._tmp)).sha256(name)))

    # commit

    def _check_target(self) -> None:
        if self.overwrite:
            return
        if self.out.local:
            target = Path(self.out.path)
            if target.is_file():
                raise DatasetError(f"output {target} is a file, not a directory")
            if target.is_dir() and any(target.iterdir()):
                raise DatasetError(f"output {target} exists and is not empty (pass --overwrite to replace it)")
        elif self.out.exists(MANIFEST):
            raise DatasetError(f"output {self.out.path} already holds a dataset (pass --overwrite to replace it)")

    def _commit(self) -> None:
        for split in SPLITS:
            if self._pending_rows[split]:
                self._flush(split, self._pending_rows[split])
        order = {s: i for i, s in enumerate(SPLITS)}
        shards = sorted(self._shards, key=lambda s: (order[s.split], s.file))
        manifest = Manifest(
            source=self.source,
            image_size=self.image_size,
            counts={s: sum(i.rows for i in shards if i.split == s) for s in SPLITS},
            mask_classes=self.mask_classes,
            shards=shards,
            content_hash=content_hash(shards),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            skipped=self._skipped_count,
            skipped_files=list(self._skipped),
            seed=self.seed,
            partition=self.partition,
            notes=self.notes,
        )
        (self._tmp / MANIFEST).write_text(manifest.to_json())
        self._check_target()
        if self.out.local:
            _replace_dir(self._tmp, Path(self.out.path))
        else:
            _upload(self._tmp, self.out, [s.file for s in shards])
        self.manifest = manifest


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``; an old ``target`` is swapped out first, then deleted."""
    old = None
    if target.exists():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        else:
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None and old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old is not None:
        old.unlink()


def _upload(tmp: Path, out: Location, files: list[str]) -> None:
    """Upload shards then the manifest (which marks the dataset complete)."""
    if out.exists(MANIFEST):
        out.delete(MANIFEST)  # the old dataset stops being readable first
    for name in [*files, MANIFEST]:
        out.put_file(tmp / name, name)


def write_dataset(
    out: str | os.PathLike[str],
    source: str,
    image_size: int,
    mask_classes: Iterable[int],
    splits: Mapping[str, Iterable[tuple[Sequence[str], np.ndarray, np.ndarray]]],
    **options: Any,
) -> Manifest:
    """Write ``splits`` (split -> iterable of (ids, images, masks) batches) as a dataset."""
    with DatasetWriter(out, source=source, image_size=image_size, mask_classes=mask_classes, **options) as w:
        for split, batches in splits.items():
            for ids, images, masks in batches:
                w.add(split, ids, images, masks)
    assert w.manifest is not None
    return w.manifest


# --- reading ---------------------------------------------------------------------------------


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read ``path/manifest.json``; a missing or invalid manifest raises DatasetError naming it."""
    loc = Location.of(path)
    where = storage_join(path, MANIFEST)  # as given: a URI keeps its scheme in the message
    try:
        text = loc.read_bytes(MANIFEST).decode("utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise DatasetError(f"no prepared dataset at {os.fspath(path)}: cannot read {where} ({exc})") from exc
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"invalid manifest {where}: {exc}") from exc
    return Manifest.from_dict(raw, where)


@dataclass
class SplitArrays:
    ids: list[str]
    images: np.ndarray  # (N, H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) uint8 in {0, 1}

    def __len__(self) -> int:
        return len(self.ids)


def _fixed_view(column: pa.Array, width: int, shape: tuple[int, ...]) -> np.ndarray:
    """A zero-copy numpy view of a fixed-size-binary column."""
    data = column.buffers()[1]
    n = len(column)
    return np.frombuffer(data, dtype=np.uint8, count=n * width, offset=column.offset * width).reshape(n, *shape)


def read_split_shards(path: str | os.PathLike[str], split: str, manifest: Manifest | None = None) -> list[SplitArrays]:
    """One SplitArrays per shard of ``split``, as views on the memory-mapped files (local paths)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    loc = Location.of(path)
    manifest = manifest or load_manifest(path)
    s = manifest.image_size
    schema = shard_schema(s)
    out: list[SplitArrays] = []
    for info in manifest.shards_of(split):
        where = loc.join(info.file)
        if not loc.exists(info.file):
            raise ShardError(where, "file is missing")
        try:
            reader = pa.ipc.open_file(loc.open_arrow(info.file))
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise ShardError(where, f"not a readable Arrow file (truncated or corrupted?): {exc}") from exc
        if not reader.schema.remove_metadata().equals(schema):
            raise ShardError(where, f"schema {reader.schema} does not match the manifest's image_size {s}")
        rows = sum(b.num_rows for b in batches)
        if rows != info.rows:
            raise ShardError(where, f"holds {rows} rows, the manifest says {info.rows}")
        for b in batches:
            try:
                b.validate(full=True)
            except pa.ArrowInvalid as exc:
                raise ShardError(where, f"invalid data: {exc}") from exc
            if b.column("image").null_count or b.column("mask").null_count or b.column("id").null_count:
                raise ShardError(where, "contains null rows")
            for col, width in (("image", s * s * 3), ("mask", s * s)):
                arr = b.column(col)
                if arr.buffers()[1].size < (arr.offset + len(arr)) * width:
                    raise ShardError(where, f"column '{col}' is shorter than its {len(arr)} rows")
            out.append(
                SplitArrays(
                    ids=b.column("id").to_pylist(),
                    images=_fixed_view(b.column("image"), s * s * 3, (s, s, 3)),
                    masks=_fixed_view(b.column("mask"), s * s, (s, s)),
                )
            )
    return out


def read_split(path: str | os.PathLike[str], split: str) -> SplitArrays:
    """All rows of ``split``: zero-copy views for a single shard, one concatenated copy otherwise."""
    manifest = load_manifest(path)
    parts = read_split_shards(path, split, manifest)
    s = manifest.image_size
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return SplitArrays([], np.empty((0, s, s, 3), np.uint8), np.empty((0, s, s), np.uint8))
    return SplitArrays(
        ids=[i for p in parts for i in p.ids],
        images=np.concatenate([p.images for p in parts]),
        masks=np.concatenate([p.masks for p in parts]),
    )


def verify(path: str | os.PathLike[str]) -> Manifest:
    """Recompute every shard's sha256; missing or changed shards raise one ShardError naming each of them."""
    loc = Location.of(path)
    manifest = load_manifest(path)
    failures = []
    for info in manifest.shards:
        where = loc.join(info.file)
        if not loc.exists(info.file):
            failures.append((where, "file is missing"))
            continue
        actual = loc.sha256(info.file)
        if actual != info.sha256:
            failures.append((where, f"sha256 {actual} does not match the manifest's {info.sha256}"))
    if failures:
        raise ShardError(*failures[0], more=failures[1:])
    if content_hash(manifest.shards) != manifest.content_hash:
        raise DatasetError(f"{loc.join(MANIFEST)}: content_hash does not match the shard hashes")
    return manifest
