"""Face-parsing classes and the face mask derived from them."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# CelebAMask-HQ / face-parsing order: the class id is the index.
FACE_PARSING_CLASSES: tuple[str, ...] = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)
NUM_CLASSES = len(FACE_PARSING_CLASSES)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(FACE_PARSING_CLASSES)}

# The paper keeps everything but background, ears, earrings, neck, necklace and cloth.
PAPER_EXCLUDED: tuple[int, ...] = (0, 7, 8, 9, 14, 15, 16)
DEFAULT_FACE_CLASSES: tuple[int, ...] = tuple(
    i for i in range(NUM_CLASSES) if i not in PAPER_EXCLUDED
)


def validate_classes(face_classes: Iterable[int]) -> tuple[int, ...]:
    """Return the classes sorted and de-duplicated; raise ValueError naming a bad id."""
    classes = sorted({int(c) for c in face_classes})
    bad = [c for c in classes if not 0 <= c < NUM_CLASSES]
    if bad:
        raise ValueError(f"face_classes: ids {bad} are outside 0..{NUM_CLASSES - 1}")
    if not classes:
        raise ValueError("face_classes: at least one class is needed")
    return tuple(classes)


def mask_lut(face_classes: Iterable[int]) -> np.ndarray:
    """A 256-entry lookup table: class id -> 1 if the class belongs to the face, else 0."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(validate_classes(face_classes))] = 1
    return lut


def face_mask(labels: np.ndarray, face_classes: Iterable[int] = DEFAULT_FACE_CLASSES) -> np.ndarray:
    """Map a uint8 label map (any shape) to a uint8 {0, 1} face mask of the same shape."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError("labels: values must lie in 0..255")
        labels = labels.astype(np.uint8)
    return mask_lut(face_classes)[labels]
