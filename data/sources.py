"""Readers for real face sources: they list records and problems; the preparer decodes.

A source's ``scan`` looks only at names (directory listings and the partition file), so it is
fast even for 200k images. Each record carries lazy loaders; decoding problems surface later,
in the preparer, attributed to the file named in the record.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from data.errors import DatasetError
from data.labels import CLASS_ID, NUM_CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARTITION_IDS = {"0": "train", "1": "val", "2": "test"}
HASH_SPLIT = (0.8, 0.1, 0.1)
HASH_PARTITION = "sha256(id) buckets: 80% train / 10% val / 10% test"
HQ_MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
# CelebAMask-HQ's own order for merging part masks: later parts overwrite earlier ones.
HQ_PART_ORDER: tuple[str, ...] = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
_LABEL_MODES = {"L", "P", "I", "I;16", "I;16L", "I;16B"}


class SourceFileError(Exception):
    """A source file is present but unusable; ``file`` is the one to name."""

    def __init__(self, file: str | Path, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = str(file), reason


@dataclass(frozen=True)
class Problem:
    file: str  # the file to name (for a partition line: "path:line")
    reason: str
    id: str | None = None  # the record it disqualifies, if any

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True)
class SourceRecord:
    id: str
    split: str
    image_file: str
    label_file: str  # named in label errors (for part masks: the pattern)
    open_image: Callable[[], Image.Image]  # lazy PIL image (not yet decoded)
    load_labels: Callable[[], np.ndarray]  # (H, W) uint8 class ids


@dataclass
class Scan:
    records: list[SourceRecord]
    problems: list[Problem] = field(default_factory=list)
    partition: str = ""  # how splits were assigned, for the manifest


class Source(Protocol):
    #: Labels always cover the image's frame. "any": at any resolution (face-parsing.PyTorch writes
    #: 512x512 maps of 178x218 CelebA crops); "aspect": with the image's aspect ratio (512 px masks
    #: of 1024 px images), anything else being a bad file.
    label_size: Literal["any", "aspect"]
    #: data.geometry mode used when the caller names none.
    default_resize: Literal["squash", "center_crop"]

    def scan(self, images: Path, masks: Path, partition: Path | None) -> Scan: ...


def hash_split(record_id: str) -> str:
    """A deterministic split from the id alone, so it is stable as files come and go."""
    bucket = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big") / 2.0**64
    if bucket < HASH_SPLIT[0]:
        return "train"
    return "val" if bucket < HASH_SPLIT[0] + HASH_SPLIT[1] else "test"


def _require_dir(path: Path, name: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{name}: directory {path} does not exist")


def _list_images(images: Path, problems: list[Problem]) -> dict[str, Path]:
    """id (file stem) -> image path; a second file with the same stem is a duplicate id."""
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(images), key=lambda e: e.name):
        if not entry.is_file() or not entry.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        stem = Path(entry.name).stem
        if stem in found:
            problems.append(Problem(entry.path, f"duplicate id {stem!r} (also {found[stem].name})", stem))
        else:
            found[stem] = Path(entry.path)
    return found


def read_partition(path: Path, problems: list[Problem]) -> dict[str, tuple[str, str]]:
    """Parse '<file> <0|1|2>' lines into stem -> (split, listed name), reporting bad lines."""
    if not path.is_file():
        raise DatasetError(f"partition: file {path} does not exist")
    splits: dict[str, tuple[str, str]] = {}
    first_line: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{n}"
        if len(fields) != 2:
            problems.append(Problem(where, f"expected '<file> <0|1|2>', got {line.strip()!r}"))
            continue
        name, pid = fields
        stem = Path(name).stem
        if stem in first_line:
            # Which line is right is unknowable: the id is dropped altogether.
            reason = f"duplicate id {stem!r}, already listed on line {first_line[stem]}"
            problems.append(Problem(f"{name} ({where})", reason, stem))
            continue
        first_line[stem] = n
        if pid not in PARTITION_IDS:
            problems.append(Problem(f"{name} ({where})", f"unknown partition id {pid!r} (expected 0, 1 or 2)", stem))
            continue
        splits[stem] = (PARTITION_IDS[pid], name)
    return splits


def _assign_splits(
    ids: dict[str, Path],
    images: Path,
    partition: dict[str, tuple[str, str]] | None,
    partition_file: Path | None,
    problems: list[Problem],
) -> dict[str, str]:
    """id -> split for every image; listed-but-missing and unlisted images are problems."""
    if partition is None:
        return {i: hash_split(i) for i in ids}
    flagged = {p.id for p in problems}
    for stem, (_, name) in partition.items():
        if stem not in ids:
            problems.append(Problem(str(images / name), f"listed in {partition_file} but missing", stem))
    out: dict[str, str] = {}
    for stem, path in ids.items():
        if stem in partition:
            out[stem] = partition[stem][0]
        elif stem not in flagged:
            problems.append(Problem(str(path), f"not listed in the partition file {partition_file}", stem))
    return out


def open_image(path: Path) -> Callable[[], Image.Image]:
    return lambda: Image.open(path)


def read_label_png(path: Path) -> np.ndarray:
    """A single-channel integer label PNG as uint8 class ids; anything else is a SourceFileError."""
    try:
        with Image.open(path) as img:
            if img.mode not in _LABEL_MODES:
                reason = f"label image has mode {img.mode}; expected a single-channel integer image (L, P or I)"
                raise SourceFileError(path, reason)
            labels = np.asarray(img)
    except SourceFileError:
        raise
    except Exception as exc:  # PIL's decoders raise many types; any of them means a bad file
        raise SourceFileError(path, f"unreadable label image: {exc}") from exc
    if labels.ndim != 2:
        raise SourceFileError(path, f"label image has shape {labels.shape}; expected (H, W)")
    if labels.size and (int(labels.max()) >= NUM_CLASSES or int(labels.min()) < 0):
        bad = int(labels.max()) if int(labels.max()) >= NUM_CLASSES else int(labels.min())
        raise SourceFileError(path, f"label value {bad} is not a class id (0..{NUM_CLASSES - 1})")
    return labels.astype(np.uint8, copy=False)


class CelebASource:
    """CelebA aligned images, face-parsing label PNGs (same stem) and list_eval_partition.txt."""

    label_size: Literal["any", "aspect"] = "any"
    # The authors squash the 178x218 crops to 144x144 (utils.py, resize_imx144).
    default_resize: Literal["squash", "center_crop"] = "squash"

    def scan(self, images: Path, masks: Path, partition: Path | None) -> Scan:
        _require_dir(images, "images")
        _require_dir(masks, "masks")
        problems: list[Problem] = []
        ids = _list_images(images, problems)
        parts = read_partition(partition, problems) if partition is not None else None
        splits = _assign_splits(ids, images, parts, partition, problems)
        label_files = {e.name for e in os.scandir(masks) if e.is_file()}
        records = []
        for stem, split in splits.items():
            label = masks / f"{stem}.png"
            if label.name not in label_files:
                problems.append(Problem(str(label), f"label file missing for image {ids[stem].name}", stem))
                continue
            records.append(
                SourceRecord(stem, split, str(ids[stem]), str(label), open_image(ids[stem]), _label_loader(label))
            )
        return Scan(records, problems, f"file {partition}" if partition else HASH_PARTITION)


def _label_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: read_label_png(path)


_PART_FILE = re.compile(r"^(\d+)_([a-z_]+)\.png$")


class CelebAMaskHQSource:
    """CelebA-HQ images ({i}.jpg) and CelebAMask-HQ part masks ({i//2000}/{i:05d}_{part}.png).

    ``partition`` is optional. When given and ``CelebA-HQ-to-CelebA-mapping.txt`` sits next to
    the image folder (as in the released archive), it is CelebA's list_eval_partition.txt and is
    translated through the mapping; otherwise it names the HQ files directly. Without it, splits
    come from a hash of the id (80/10/10).
    """

    label_size: Literal["any", "aspect"] = "aspect"
    # Square 1024 px images: no crop either way, and the antialiased bicubic suits the large reduction.
    default_resize: Literal["squash", "center_crop"] = "center_crop"

    def scan(self, images: Path, masks: Path, partition: Path | None) -> Scan:
        _require_dir(images, "images")
        _require_dir(masks, "masks")
        problems: list[Problem] = []
        ids = _list_images(images, problems)
        for stem in [s for s in ids if not s.isdigit()]:
            problems.append(Problem(str(ids.pop(stem)), "file name is not a CelebA-HQ index", stem))
        parts = self._index_parts(masks, problems)
        note = HASH_PARTITION
        split_of = None
        if partition is not None:
            split_of = read_partition(partition, problems)
            mapping = images.parent / HQ_MAPPING_FILE
            if mapping.is_file():
                split_of = _translate(split_of, mapping, problems)
                note = f"file {partition} via {mapping}"
            else:
                note = f"file {partition}"
        splits = _assign_splits(ids, images, split_of, partition, problems)
        records = []
        for stem, split in splits.items():
            pattern = str(masks / str(int(stem) // 2000) / f"{int(stem):05d}_*.png")
            found = parts.get(int(stem))
            if not found:
                problems.append(Problem(pattern, f"no part masks for image {ids[stem].name}", stem))
                continue
            records.append(
                SourceRecord(stem, split, str(ids[stem]), pattern, open_image(ids[stem]), _merge_loader(found))
            )
        return Scan(records, problems, note)

    @staticmethod
    def _index_parts(masks: Path, problems: list[Problem]) -> dict[int, dict[str, Path]]:
        found: dict[int, dict[str, Path]] = {}
        for folder in sorted(p for p in masks.iterdir() if p.is_dir()):
            for entry in os.scandir(folder):
                m = _PART_FILE.match(entry.name)
                if not m:
                    continue
                index, part = int(m.group(1)), m.group(2)
                if part not in HQ_PART_ORDER:
                    problems.append(Problem(entry.path, f"unknown part name {part!r}", str(index)))
                    continue
                found.setdefault(index, {})[part] = Path(entry.path)
        return found


def _translate(
    celeba_splits: dict[str, tuple[str, str]], mapping: Path, problems: list[Problem]
) -> dict[str, tuple[str, str]]:
    """CelebA stem -> split, to HQ index -> split via the mapping's (idx, orig_idx, orig_file)."""
    out: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(mapping.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or not fields[0].isdigit():
            continue  # header or blank
        if len(fields) != 3:
            problems.append(Problem(f"{mapping}:{n}", f"expected 'idx orig_idx orig_file', got {line.strip()!r}"))
            continue
        orig = Path(fields[2]).stem
        if orig in celeba_splits:
            out[fields[0]] = (celeba_splits[orig][0], f"{fields[0]}.jpg")
    return out


def _merge_loader(parts: dict[str, Path]) -> Callable[[], np.ndarray]:
    return lambda: merge_parts(parts)


def merge_parts(parts: dict[str, Path]) -> np.ndarray:
    """Combine binary part masks into one label map, in CelebAMask-HQ's own overwrite order."""
    labels: np.ndarray | None = None
    first: Path | None = None
    for part in HQ_PART_ORDER:
        path = parts.get(part)
        if path is None:
            continue
        try:
            with Image.open(path) as img:
                if img.mode.startswith(("F", "I")):
                    raise SourceFileError(path, f"part mask has mode {img.mode}; expected an 8-bit image")
                m = np.asarray(img)
        except SourceFileError:
            raise
        except Exception as exc:  # as above
            raise SourceFileError(path, f"unreadable part mask: {exc}") from exc
        if m.ndim == 3:
            m = m[..., 0]
        if labels is None:
            labels, first = np.zeros(m.shape, np.uint8), path
        elif m.shape != labels.shape:
            raise SourceFileError(
                path, f"part mask is {m.shape[1]}x{m.shape[0]} but {first.name} is {labels.shape[1]}x{labels.shape[0]}"
            )
        labels[m != 0] = CLASS_ID[part]
    assert labels is not None  # callers pass at least one part
    return labels


SOURCES: dict[str, Source] = {
    "celeba": CelebASource(),
    "celebamask-hq": CelebAMaskHQSource(),
}

__all__ = [
    "SOURCES",
    "CelebASource",
    "CelebAMaskHQSource",
    "Problem",
    "Scan",
    "SourceFileError",
    "SourceRecord",
    "hash_split",
    "merge_parts",
    "read_label_png",
    "read_partition",
]
