"""A picture of the synthetic faces beside their face masks (the README's docs/synthetic_faces.png), for tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from data.labels import DEFAULT_FACE_CLASSES, face_mask
from data.synthetic import render_faces


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Show a face mask on an image: the face as is, the rest dimmed and grey, the edge drawn."""
    out = image.astype(np.float32)
    m = mask.astype(bool)
    grey = out[~m].mean(axis=1, keepdims=True)
    out[~m] = (0.3 * out[~m] + 0.7 * grey) * 0.3
    out[m ^ _erode(m)] = (255, 214, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _erode(m: np.ndarray) -> np.ndarray:
    e = m.copy()
    e[1:] &= m[:-1]
    e[:-1] &= m[1:]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return e


def save_sample_grid(
    path: str | Path,
    count: int = 24,
    size: int = 144,
    seed: int = 0,
    columns: int = 6,
    face_classes: Iterable[int] = DEFAULT_FACE_CLASSES,
) -> Path:
    """Save a PNG grid of synthetic faces, each beside its face-mask overlay."""
    images, labels = render_faces(count, size, seed)
    masks = face_mask(labels, face_classes)
    rows = -(-count // columns)
    gap = max(2, size // 36)
    cell_w = 2 * size + gap
    canvas = np.full((rows * (size + gap) + gap, columns * (cell_w + gap) + gap, 3), 255, np.uint8)
    for i in range(count):
        r, c = divmod(i, columns)
        y0, x0 = gap + r * (size + gap), gap + c * (cell_w + gap)
        canvas[y0 : y0 + size, x0 : x0 + size] = images[i]
        canvas[y0 : y0 + size, x0 + size + gap // 2 : x0 + 2 * size + gap // 2] = overlay(images[i], masks[i])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, optimize=True)
    return path
