import numpy as np
import pytest

from data.labels import DEFAULT_FACE_CLASSES, FACE_PARSING_CLASSES, PAPER_EXCLUDED, face_mask, mask_lut


def test_class_order_matches_celebamask_hq():
    assert len(FACE_PARSING_CLASSES) == 19
    assert FACE_PARSING_CLASSES[0] == "background"
    assert FACE_PARSING_CLASSES[1] == "skin"
    assert FACE_PARSING_CLASSES[17] == "hair"
    assert FACE_PARSING_CLASSES[18] == "hat"
    names = {FACE_PARSING_CLASSES[i] for i in PAPER_EXCLUDED}
    assert names == {"background", "l_ear", "r_ear", "ear_r", "neck", "neck_l", "cloth"}


def test_default_face_classes_are_the_complement_of_the_excluded():
    assert set(DEFAULT_FACE_CLASSES) | set(PAPER_EXCLUDED) == set(range(19))
    assert not set(DEFAULT_FACE_CLASSES) & set(PAPER_EXCLUDED)


def test_face_mask_matches_a_per_pixel_rule():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (5, 7, 9)).astype(np.uint8)
    mask = face_mask(labels)
    expected = np.isin(labels, DEFAULT_FACE_CLASSES).astype(np.uint8)
    assert mask.dtype == np.uint8
    assert mask.shape == labels.shape
    np.testing.assert_array_equal(mask, expected)


def test_face_mask_honours_custom_classes():
    labels = np.array([[0, 1, 7], [17, 18, 16]], dtype=np.uint8)
    np.testing.assert_array_equal(face_mask(labels, [1, 7]), [[0, 1, 1], [0, 0, 0]])


@pytest.mark.parametrize("classes", [[19], [-1], []])
def test_bad_face_classes_are_rejected(classes):
    with pytest.raises(ValueError, match="face_classes"):
        mask_lut(classes)
