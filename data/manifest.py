"""The prepared format: a manifest plus per-split Arrow IPC shard files.

``OUT/manifest.json`` and ``OUT/{split}-{k:05d}.arrow``; each shard holds columns ``id`` (string),
``image`` (fixed-size binary, H*W*3 bytes, HWC uint8) and ``mask`` (fixed-size binary, H*W bytes,
0/1). Shards are uncompressed IPC *files*, so local ones are memory-mapped and read without a copy.
This module holds the format and its manifest; `data.shards` writes datasets, `data.shard_reader`
reads and verifies them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from data.errors import DatasetError
from data.storage import Location
from data.storage import join as storage_join

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST = "manifest.json"



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
        need = _field_reader(raw, where, problems)
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
        shards = _shard_infos(need("shards", list) or [], where, problems)
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


def _field_reader(raw: dict[str, Any], where: str, problems: list[str]) -> Callable[[str, Any], Any]:
    """`need(name, kind)`: the field's value when it has that type, else None with a problem noted."""
    def need(name: str, kind: type | tuple[type, ...]) -> Any:
        value = raw.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            problems.append(f"{where}: field '{name}' missing or not {_kind_name(kind)}")
            return None
        return value

    return need


def _shard_infos(shards_raw: list[Any], where: str, problems: list[str]) -> list[ShardInfo]:
    """The well-formed shard entries; each malformed one is a problem noted, by index."""
    shards: list[ShardInfo] = []
    for i, s in enumerate(shards_raw):
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
    return shards


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
