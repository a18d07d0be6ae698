"""How a source image and its label map become a ``size`` x ``size`` training pair.

Two modes, both applied to the image and its labels alike:

- ``squash``: the whole frame resized to a square, aspect ratio not kept. This is the authors'
  preprocessing (utils.py: ``cv2.resize(image, (144, 144))``), reproduced bit for bit: cv2's
  INTER_LINEAR taps (pixel-centre aligned, two per axis, edges repeated) and its x86 fixed-point
  arithmetic (11-bit weights, horizontal pass first). A frame over twice the target size is first
  box-averaged by an integer factor, which cv2 does not do (the reference, 178x218 -> 144, never is).
- ``center_crop``: the centred square (CelebA's 178x218 loses 20 rows top and bottom), then PIL's
  antialiased bicubic resize.

Labels: a label map covers the image's frame at any resolution (face-parsing.PyTorch writes 512x512
whatever the input), so the same region of it is taken and resampled nearest-neighbour to ``size``.
The face mask is then 0/1; the authors instead resize the binary mask bilinearly, which leaves
fractional values along its edge.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESIZE_MODES: tuple[str, ...] = ("squash", "center_crop")
_ONE = 2048  # cv2's INTER_RESIZE_COEF_SCALE: bilinear weights are integers out of this
NOTES = {
    "squash": "whole frame squashed to a square: image bilinear (cv2 INTER_LINEAR sampling), labels nearest",
    "center_crop": "centre square crop (min side), then resize: image bicubic, labels nearest",
}


def check_resize(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize: expected one of {list(RESIZE_MODES)}, got {resize!r}")
    return resize


def centre_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square (left, top, right, bottom) used for both images and labels."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def _linear_taps(src: int, dst: int, columns: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cv2 INTER_LINEAR along one axis: both source indices per output pixel and their weights out of 2048."""
    position = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    fraction = position - first.astype(np.float32)
    if columns:  # past an edge cv2 puts the whole weight on the edge column; rows keep both weights
        fraction[(first < 0) | (first >= src - 1)] = 0.0
    second = np.clip(first + 1, 0, src - 1)
    first = np.clip(first, 0, src - 1)
    # cv2 rounds each weight on its own (they may not sum to exactly 2048).
    w1 = np.rint(fraction * np.float32(_ONE)).astype(np.int64)
    w0 = np.rint((np.float32(1) - fraction) * np.float32(_ONE)).astype(np.int64)
    return first, second, w0, w1


def squash_image(rgb: Image.Image, size: int) -> np.ndarray:
    """The whole RGB frame bilinearly resized to (size, size, 3) uint8, as cv2.resize computes it."""
    factors = (-(-rgb.width // (2 * size)), -(-rgb.height // (2 * size)))
    if factors != (1, 1):
        rgb = rgb.reduce(factors)
    pixels = np.asarray(rgb, dtype=np.int64)
    top, bottom, b0, b1 = _linear_taps(pixels.shape[0], size, columns=False)
    left, right, a0, a1 = _linear_taps(pixels.shape[1], size, columns=True)
    rows = pixels[:, left] * a0[None, :, None] + pixels[:, right] * a1[None, :, None]
    # cv2's vectorised vertical pass: drop 4 bits, multiply, keep the top 16, round the last 2.
    upper = (b0[:, None, None] * (rows[top] >> 4)) >> 16
    lower = (b1[:, None, None] * (rows[bottom] >> 4)) >> 16
    return np.clip((upper + lower + 2) >> 2, 0, 255).astype(np.uint8)


def resize_image(rgb: Image.Image, size: int, resize: str) -> np.ndarray:
    if resize == "squash":
        return squash_image(rgb, size)
    square = rgb.crop(centre_crop_box(*rgb.size)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(square, dtype=np.uint8)


def resize_labels(labels: np.ndarray, frame: tuple[int, int], size: int, resize: str) -> np.ndarray:
    """(size, size) class ids from a label map covering an image frame of (width, height)."""
    height, width = labels.shape
    if resize == "squash":
        box = (0.0, 0.0, float(width), float(height))
    else:
        # The image's crop, carried into the label map's own resolution.
        left, top, right, bottom = centre_crop_box(*frame)
        sx, sy = width / frame[0], height / frame[1]
        box = (left * sx, top * sy, right * sx, bottom * sy)
    image = Image.fromarray(labels, mode="L")
    return np.asarray(image.resize((size, size), Image.Resampling.NEAREST, box=box))
