"""Squash and centre-crop geometry, and face-parsing label maps of any size prepared against CelebA crops."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data.geometry import resize_labels, squash_image
from data.labels import CLASS_ID
from data.prepare import prepare
from tests.helpers.datasets import read_split

CELEBA = (178, 218)  # aligned crops, (width, height)
PARSING = 512  # face-parsing.PyTorch's label maps are 512x512 whatever the input
# A skin rectangle in frame fractions (top, bottom, left, right): rows 1/4..3/4, columns 1/8..5/8.
RECT = (0.25, 0.75, 0.125, 0.625)


def test_squash_is_bilinear_by_hand():
    # 3 -> 2 px: centres at 0.25 and 1.75 of the source, so 3/4 + 1/4 and 1/4 + 3/4 on each axis.
    values = np.array([0, 100, 200], dtype=np.uint8)
    image = np.stack([np.add.outer(values // 2, values // 2)] * 3, axis=-1).astype(np.uint8)
    out = squash_image(Image.fromarray(image), 2)[..., 0].astype(float)
    along = np.array([0.75 * 0 + 0.25 * 50, 0.25 * 50 + 0.75 * 100])
    np.testing.assert_allclose(out, np.add.outer(along, along), atol=0.5)


def test_squash_does_not_antialias_like_pil():
    # One-pixel stripes, 4 -> 2: bilinear at the half-pixel centres averages neighbour pairs exactly.
    stripes = np.zeros((4, 4, 3), np.uint8)
    stripes[:, 1::2] = 200
    out = squash_image(Image.fromarray(stripes), 2)
    assert (out == 100).all()


def test_squash_matches_cv2_bit_for_bit():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for (width, height), size in ((CELEBA, 144), ((40, 48), 32), ((10, 10), 17)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        np.testing.assert_array_equal(squash_image(Image.fromarray(image), size), cv2.resize(image, (size, size)))


def test_centre_crop_labels_carry_the_crop_into_the_label_resolution():
    # A 512x512 map of a 178x218 frame: the crop's 20 rows top and bottom are 47 label rows there.
    labels = np.zeros((PARSING, PARSING), np.uint8)
    labels[:47] = 1
    labels[-47:] = 2
    out = resize_labels(labels, CELEBA, 178, "center_crop")
    assert out.shape == (178, 178) and not np.isin(out, (1, 2)).any()
    squashed = resize_labels(labels, CELEBA, 218, "squash")
    assert (squashed[:20] == 1).all() and (squashed[-20:] == 2).all()


def _face_parsing_layout(root, count=3):
    """CelebA-sized JPEGs with 512x512 label PNGs; image and labels share the skin rectangle's frame fractions."""
    (root / "img").mkdir(parents=True)
    (root / "labels").mkdir()
    top, bottom, left, right = RECT
    for i in range(count):
        image = np.full((CELEBA[1], CELEBA[0], 3), 20, np.uint8)
        rows = slice(round(top * CELEBA[1]), round(bottom * CELEBA[1]))
        image[rows, round(left * CELEBA[0]): round(right * CELEBA[0])] = 230
        Image.fromarray(image).save(root / "img" / f"{i:06d}.jpg", quality=95)
        labels = np.zeros((PARSING, PARSING), np.uint8)
        labels[int(top * PARSING): int(bottom * PARSING), int(left * PARSING): int(right * PARSING)] = CLASS_ID["skin"]
        Image.fromarray(labels, mode="L").save(root / "labels" / f"{i:06d}.png")
    return root


def _expected_mask(size: int, resize: str) -> np.ndarray:
    """Which output pixels sample the rectangle: nearest-neighbour at pixel centres, in frame fractions."""
    centres = (np.arange(size) + 0.5) / size
    if resize == "squash":
        rows = centres
    else:  # the centred 178x178 square of the 218-row frame
        crop_top = (CELEBA[1] - CELEBA[0]) // 2
        rows = (crop_top + centres * CELEBA[0]) / CELEBA[1]
    top, bottom, left, right = RECT
    inside_rows = (np.floor(rows * PARSING) >= top * PARSING) & (np.floor(rows * PARSING) < bottom * PARSING)
    inside_cols = (np.floor(centres * PARSING) >= left * PARSING) & (np.floor(centres * PARSING) < right * PARSING)
    return np.outer(inside_rows, inside_cols).astype(np.uint8)


@pytest.mark.parametrize("size", [144, 32])
@pytest.mark.parametrize("resize", ["squash", "center_crop"])
def test_512_px_labels_of_celeba_crops_prepare_with_the_image(tmp_path, size, resize):
    root = _face_parsing_layout(tmp_path / "celeba")
    out = tmp_path / "out"
    manifest = prepare(out, "celeba", root / "img", root / "labels", None, size, progress=False, resize=resize)
    assert sum(manifest.counts.values()) == 3 and manifest.notes["resize"] == resize
    expected = _expected_mask(size, resize)
    assert 0 < expected.sum() < expected.size
    for split in ("train", "val", "test"):
        arrays = read_split(out, split)
        for image, mask in zip(arrays.images, arrays.masks):
            np.testing.assert_array_equal(mask, expected)
            # The image's rectangle lands on the mask's: bright inside, dark outside, away from the edges.
            brightness = image.mean(axis=-1)
            inner = np.asarray(Image.fromarray(expected * 255).filter(_erode(size)))
            outer = np.asarray(Image.fromarray((1 - expected) * 255).filter(_erode(size)))
            assert (brightness[inner > 0] > 200).all() and (brightness[outer > 0] < 50).all()


def _erode(size: int):
    from PIL import ImageFilter

    return ImageFilter.MinFilter(5 if size >= 64 else 3)
