"""Writing a prepared dataset (`data.manifest` describes the format).

Paths are local paths or URIs (``s3://``, ``gs://``, ``file://`` ...). URIs go through
``pyarrow.fs``; as object stores have no atomic rename, a URI output is uploaded shard by shard and
the manifest last, so a dataset without a manifest is never read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from data.errors import DatasetError
from data.manifest import MANIFEST, SPLITS, Manifest, ShardInfo, content_hash, shard_schema
from data.storage import Location

DEFAULT_SHARD_ROWS = 4096
_SKIPPED_LISTED = 1000  # names kept in the manifest; the count is always exact


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
