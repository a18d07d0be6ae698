import numpy as np
import pytest
from PIL import Image

from data.labels import CLASS_ID, DEFAULT_FACE_CLASSES, face_mask
from tests.helpers.sample_grid import save_sample_grid
from data.synthetic import render_faces
from tests.helpers.fake_layouts import write_celeba_layout, write_celebamask_hq_layout


def test_same_seed_same_faces_and_different_seed_different_faces():
    a_img, a_lab = render_faces(6, 32, seed=3)
    b_img, b_lab = render_faces(6, 32, seed=3)
    c_img, c_lab = render_faces(6, 32, seed=4)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_lab, c_lab)


def test_chunks_concatenate_to_the_whole():
    whole_img, whole_lab = render_faces(10, 32, seed=5)
    parts = [render_faces(n, 32, seed=5, start=s) for s, n in ((0, 3), (3, 4), (7, 3))]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole_img)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole_lab)


def test_faces_within_a_batch_differ():
    images, labels = render_faces(8, 32, seed=0)
    flat = images.reshape(8, -1).astype(np.int16)
    for i in range(8):
        for j in range(i + 1, 8):
            assert np.abs(flat[i] - flat[j]).mean() > 5


@pytest.mark.parametrize("size", [32, 48])
def test_labels_cover_face_parts_and_background(size):
    images, labels = render_faces(48, size, seed=1)
    assert images.shape == (48, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (48, size, size) and labels.dtype == np.uint8
    assert labels.max() <= 18
    present = set(np.unique(labels).tolist())
    parts = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "l_lip", "hair",
             "neck", "cloth")
    for name in parts:
        assert CLASS_ID[name] in present, name
    masks = face_mask(labels, DEFAULT_FACE_CLASSES)
    share = masks.reshape(48, -1).mean(axis=1)
    assert (share > 0.1).all() and (share < 0.8).all()
    for lab in labels:
        assert (lab == 0).any() and (lab == CLASS_ID["skin"]).any()


def test_labels_follow_the_picture():
    # Pixels labelled as the same part of one face share a colour; background does not.
    images, labels = render_faces(16, 48, seed=2)
    for img, lab in zip(images.astype(np.float32), labels):
        skin = img[lab == CLASS_ID["skin"]]
        background = img[lab == 0]
        assert skin.std(axis=0).mean() < background.std(axis=0).mean()


def test_large_faces_render():
    images, labels = render_faces(1, 144, seed=0)
    assert images.shape == (1, 144, 144, 3)
    assert len(np.unique(labels)) >= 8


@pytest.mark.parametrize("kwargs", [dict(count=-1), dict(size=2), dict(seed=-3), dict(start=1.5)])
def test_bad_arguments_name_the_field(kwargs):
    args = dict(count=1, size=32, seed=0, start=0) | kwargs
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        render_faces(**args)


def test_sample_grid(tmp_path):
    path = save_sample_grid(tmp_path / "grid.png", count=4, size=32, columns=2)
    with Image.open(path) as img:
        assert img.mode == "RGB"
        assert img.width > 4 * 32 and img.height > 2 * 32


def test_celeba_layout(tmp_path):
    root = write_celeba_layout(tmp_path, 10, (24, 32), seed=0)
    jpgs = sorted(p.name for p in (root / "img_align_celeba").iterdir())
    assert jpgs == [f"{i:06d}.jpg" for i in range(1, 11)]
    with Image.open(root / "img_align_celeba" / "000001.jpg") as img:
        assert img.size == (24, 32)
    with Image.open(root / "labels" / "000001.png") as lab:
        assert lab.mode == "L" and lab.size == (24, 32)
    lines = (root / "list_eval_partition.txt").read_text().split("\n")[:-1]
    assert [line.split()[1] for line in lines] == ["0"] * 8 + ["1", "2"]


def test_celebamask_hq_layout_parts_rebuild_the_labels(tmp_path):
    root = write_celebamask_hq_layout(tmp_path, 3, 32, seed=7)
    _, labels = render_faces(3, 32, seed=7)
    anno = root / "CelebAMask-HQ-mask-anno" / "0"
    for i in range(3):
        rebuilt = np.zeros((32, 32), np.uint8)
        for part in anno.glob(f"{i:05d}_*.png"):
            name = part.stem.split("_", 1)[1]
            png = np.asarray(Image.open(part))
            assert set(np.unique(png).tolist()) <= {0, 255}
            rebuilt[png > 0] = CLASS_ID[name]
        np.testing.assert_array_equal(rebuilt, labels[i])
    assert (root / "CelebA-HQ-to-CelebA-mapping.txt").read_text().startswith("idx")


def test_drawing_windows_never_clip_a_part(monkeypatch):
    # Parts are evaluated only inside a window around them, for speed; with windows covering
    # the whole grid the faces must come out identical.
    from data.face_canvas import Canvas

    fast = render_faces(40, 48, seed=8)
    monkeypatch.setattr(Canvas, "window", lambda self, cu, cv, radius: (slice(None), slice(None)))
    slow = render_faces(40, 48, seed=8)
    np.testing.assert_array_equal(fast[1], slow[1])
    np.testing.assert_array_equal(fast[0], slow[0])
