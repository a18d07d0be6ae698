"""Fake CelebA and CelebAMask-HQ source folders, drawn by the synthetic renderer, for the preparer's tests."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from data.labels import FACE_PARSING_CLASSES
from data.sources import HQ_MAPPING_FILE
from data.synthetic import render_faces, split_counts

# CelebAMask-HQ's file names per class (its own spelling equals the face-parsing names).
HQ_PARTS: tuple[str, ...] = tuple(c for c in FACE_PARSING_CLASSES if c != "background")


def _render_jpeg_ready(
    count: int, size: int | tuple[int, int], seed: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (index, image HxWx3, labels HxW); a (width, height) is cut from the centre of a square render."""
    width, height = (size, size) if isinstance(size, int) else size
    if width > height:
        raise ValueError(f"size: width {width} must not exceed height {height}")
    left = (height - width) // 2
    chunk = 256
    for start in range(0, count, chunk):
        images, labels = render_faces(min(chunk, count - start), height, seed, start)
        for j in range(len(images)):
            yield start + j, images[j][:, left : left + width], labels[j][:, left : left + width]


def write_celeba_layout(
    root: str | Path,
    count: int,
    size: int | tuple[int, int],
    seed: int,
    partition: Sequence[float] = (0.8, 0.1, 0.1),
    label_size: int | None = None,
) -> Path:
    """Write CelebA's layout: img_align_celeba/*.jpg, labels/*.png, list_eval_partition.txt.

    ``size`` may be (width, height) to mimic CelebA's 178x218 portrait crops. ``label_size`` makes
    the label maps that square size, the whole frame squashed into it, as face-parsing.PyTorch's
    512x512 output is.
    """
    root = Path(root)
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    n_train, n_val, _ = split_counts(count, partition)
    lines = []
    for i, image, labels in _render_jpeg_ready(count, size, seed):
        name = f"{i + 1:06d}"
        Image.fromarray(image).save(root / "img_align_celeba" / f"{name}.jpg", quality=95)
        label_img = Image.fromarray(labels, mode="L")
        if label_size is not None:
            label_img = label_img.resize((label_size, label_size), Image.Resampling.NEAREST)
        label_img.save(root / "labels" / f"{name}.png")
        lines.append(f"{name}.jpg {0 if i < n_train else 1 if i < n_train + n_val else 2}\n")
    (root / "list_eval_partition.txt").write_text("".join(lines))
    return root


def write_celebamask_hq_layout(
    root: str | Path,
    count: int,
    size: int,
    seed: int,
    mask_size: int | None = None,
    partition: Sequence[float] = (0.8, 0.1, 0.1),
) -> Path:
    """Write CelebAMask-HQ's layout.

    CelebA-HQ-img/{i}.jpg, CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_{part}.png (0/255, only
    the parts present; ``mask_size`` mimics the real 512 px masks of 1024 px images), plus
    CelebA-HQ-to-CelebA-mapping.txt and a CelebA list_eval_partition.txt naming the original files.
    """
    root = Path(root)
    img_dir, anno = root / "CelebA-HQ-img", root / "CelebAMask-HQ-mask-anno"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_size = size if mask_size is None else mask_size
    n_train, n_val, _ = split_counts(count, partition)
    # Original CelebA indices: a shuffled, 1-based subset, as in the real mapping.
    originals = np.random.default_rng([seed, 1]).permutation(count * 3)[:count] + 1
    mapping = ["idx orig_idx orig_file\n"]
    part_lines = []
    for i, image, labels in _render_jpeg_ready(count, size, seed):
        Image.fromarray(image).save(img_dir / f"{i}.jpg", quality=95)
        small = Image.fromarray(labels, mode="L").resize((mask_size, mask_size), Image.Resampling.NEAREST)
        small_np = np.asarray(small)
        folder = anno / str(i // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for class_id, part in enumerate(HQ_PARTS, start=1):
            part_mask = small_np == class_id
            if part_mask.any():
                Image.fromarray(part_mask.astype(np.uint8) * 255, mode="L").save(folder / f"{i:05d}_{part}.png")
        orig = int(originals[i])
        mapping.append(f"{i} {orig - 1} {orig:06d}.jpg\n")
        part_lines.append((orig, 0 if i < n_train else 1 if i < n_train + n_val else 2))
    (root / HQ_MAPPING_FILE).write_text("".join(mapping))
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{orig:06d}.jpg {split}\n" for orig, split in sorted(part_lines))
    )
    return root
