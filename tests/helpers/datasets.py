"""Whole-dataset reads and writes that only tests need: the shipped code streams shards instead."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from data.manifest import Manifest, load_manifest
from data.shard_reader import SplitArrays, read_split_shards
from data.shards import DatasetWriter


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
