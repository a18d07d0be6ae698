"""Reading and verifying a prepared dataset: memory-mapped when local, streamed from object stores."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from data.errors import DatasetError, ShardError
from data.manifest import MANIFEST, SPLITS, Manifest, content_hash, load_manifest, shard_schema
from data.storage import Location


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
