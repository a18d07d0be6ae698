"""Convert a face source (real or synthetic) into the prepared shard format.

Geometry (see data.geometry): ``squash`` (the authors' bilinear resize of the whole frame) or
``center_crop``; labels follow the image and then become the 0/1 face mask. Large JPEGs are
decoded at a reduced DCT scale (still at least twice ``size``) for speed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data.errors import DatasetError
from data.geometry import NOTES, check_resize, resize_image, resize_labels
from data.labels import DEFAULT_FACE_CLASSES, mask_lut, validate_classes
from data.manifest import SPLITS, Manifest
from data.shards import DEFAULT_SHARD_ROWS, DatasetWriter
from data.sources import SOURCES, Problem, Source, SourceFileError, SourceRecord
from data.synthetic import render_faces, split_counts

_CHUNK = 64  # records decoded per pool round-trip; bounds memory held by the pool


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 4:
        raise ValueError(f"size: expected an integer >= 4, got {size!r}")


def decode_record(
    rec: SourceRecord, size: int, lut: np.ndarray, label_size: str, resize: str
) -> tuple[np.ndarray, np.ndarray] | Problem:
    """(image (size, size, 3) uint8, mask (size, size) uint8) or the Problem naming the bad file."""
    try:
        with rec.open_image() as img:
            width, height = img.size
            if img.format == "JPEG" and min(width, height) >= 4 * size:
                img.draft("RGB", (2 * size, 2 * size))
            rgb = img.convert("RGB")
    except Exception as exc:  # PIL's decoders raise many types; any of them means a bad file
        return Problem(rec.image_file, f"unreadable image: {exc}", rec.id)
    try:
        labels = rec.load_labels()
    except SourceFileError as exc:
        return Problem(exc.file, exc.reason, rec.id)
    except Exception as exc:  # as above: a decoder failure names the label file
        return Problem(rec.label_file, f"unreadable labels: {exc}", rec.id)
    lh, lw = labels.shape
    if label_size == "aspect" and lw * height != lh * width:
        return Problem(rec.label_file, f"labels {lw}x{lh} do not have the image's aspect ({width}x{height})", rec.id)
    image = resize_image(rgb, size, resize)
    return image, lut[resize_labels(labels, (width, height), size, resize)]


def _chunks(items: Sequence[SourceRecord], n: int) -> Iterable[Sequence[SourceRecord]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _write_chunk(writer: DatasetWriter, chunk: Sequence[SourceRecord], results: list[Any], problems: list[Problem],
                 skip_bad: bool) -> None:
    """Note a decoded chunk's bad files and write its good rows, split by split."""
    rows: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {s: [] for s in SPLITS}
    for rec, result in zip(chunk, results):
        if isinstance(result, Problem):
            problems.append(result)
        else:
            rows[rec.split].append((rec.id, *result))
    # Once a problem is known and it will fail anyway, only keep validating.
    if skip_bad or not problems:
        for split, items in rows.items():
            if items:
                ids, pictures, face_masks = zip(*items)
                writer.add(split, list(ids), np.stack(pictures), np.stack(face_masks))


def _finish(writer: DatasetWriter, problems: list[Problem], skip_bad: bool, what: str,
            images: str | os.PathLike[str]) -> None:
    """Every bad file in one DatasetError (unless skipped: then named in the manifest); none usable fails too."""
    if problems and not skip_bad:
        raise DatasetError(
            f"{len(problems)} bad file(s) in {what} (pass --skip-bad to leave them out)",
            [str(p) for p in problems],
        )
    if sum(writer.counts.values()) == 0:
        raise DatasetError(f"no usable images in {images}", [str(p) for p in problems])
    writer.skip(sorted({p.file for p in problems}))


def prepare(
    out: str | os.PathLike[str],
    source: str,
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str],
    partition: str | os.PathLike[str] | None,
    size: int,
    face_classes: Iterable[int] = DEFAULT_FACE_CLASSES,
    skip_bad: bool = False,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    progress: bool = True,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    resize: str | None = None,
) -> Manifest:
    """Prepare a real source into OUT.

    ``resize`` is "squash" or "center_crop" (None: the source's default, squash for CelebA).
    Every bad file is collected; by default they are all listed in one DatasetError and OUT is
    not created. With ``skip_bad`` they are left out and named in the manifest.
    """
    if source not in SOURCES:
        raise ValueError(f"source: unknown source {source!r}; known: {sorted(SOURCES)}")
    _check_size(size)
    classes = validate_classes(face_classes)
    src: Source = SOURCES[source]
    resize = check_resize(src.default_resize if resize is None else resize)
    scan = src.scan(Path(images), Path(masks), Path(partition) if partition is not None else None)
    problems: list[Problem] = list(scan.problems)
    excluded = {p.id for p in problems if p.id is not None}
    records = [r for r in scan.records if r.id not in excluded]
    lut = mask_lut(classes)
    workers = workers or min(4, os.cpu_count() or 1)
    with (
        DatasetWriter(
            out,
            source=source,
            image_size=size,
            mask_classes=classes,
            shard_rows=shard_rows,
            overwrite=overwrite,
            partition=scan.partition,
            notes={"resize": resize, "geometry": NOTES[resize]},
        ) as writer,
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(records), disable=not progress, unit="img", desc=f"prepare {source}") as bar,
    ):
        for chunk in _chunks(records, _CHUNK):
            results = list(pool.map(lambda r: decode_record(r, size, lut, src.label_size, resize), chunk))
            _write_chunk(writer, chunk, results, problems, skip_bad)
            bar.update(len(chunk))
        _finish(writer, problems, skip_bad, f"the {source} source", images)
    assert writer.manifest is not None
    return writer.manifest


def synthesize(
    out: str | os.PathLike[str],
    count: int,
    size: int,
    seed: int,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    face_classes: Iterable[int] = DEFAULT_FACE_CLASSES,
    progress: bool = True,
    *,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    overwrite: bool = False,
    chunk: int = 512,
) -> Manifest:
    """Render ``count`` synthetic faces into OUT: the first fraction train, then val, then test."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count: expected a positive integer, got {count!r}")
    _check_size(size)
    lut = mask_lut(validate_classes(face_classes))
    n_train, n_val, n_test = split_counts(count, splits)
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, count)}
    with (
        DatasetWriter(
            out,
            source="synthetic",
            image_size=size,
            mask_classes=validate_classes(face_classes),
            shard_rows=shard_rows,
            overwrite=overwrite,
            seed=seed,
            partition=f"faces in order: {n_train} train, {n_val} val, {n_test} test",
        ) as writer,
        tqdm(total=count, disable=not progress, unit="face", desc="synthesize") as bar,
    ):
        for split, (lo, hi) in bounds.items():
            for start in range(lo, hi, chunk):
                n = min(chunk, hi - start)
                images, labels = render_faces(n, size, seed, start)
                writer.add(split, [f"{i:06d}" for i in range(start, start + n)], images, lut[labels])
                bar.update(n)
    assert writer.manifest is not None
    return writer.manifest
