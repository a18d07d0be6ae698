import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.labels import CLASS_ID, DEFAULT_FACE_CLASSES, face_mask
from data.prepare import prepare, synthesize
from data.manifest import SPLITS, load_manifest
from data.shard_reader import verify
from tests.helpers.datasets import read_split
from data.synthetic import render_faces
from tests.helpers.fake_layouts import write_celeba_layout, write_celebamask_hq_layout

SPLIT_OF = {"0": "train", "1": "val", "2": "test"}


def _centre(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    return img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))


def _bilinear(img: Image.Image, size: int) -> np.ndarray:
    """Half-pixel bilinear without antialiasing (cv2's INTER_LINEAR), in float by torch."""
    pixels = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def _partition(path: Path) -> dict[str, str]:
    return {Path(n).stem: SPLIT_OF[p] for n, p in (line.split() for line in path.read_text().splitlines())}


@pytest.fixture(scope="module")
def celeba_source(tmp_path_factory):
    return write_celeba_layout(tmp_path_factory.mktemp("celeba"), 30, (40, 48), seed=11)


@pytest.fixture(scope="module", params=["squash", "center_crop"])
def celeba(request, celeba_source, tmp_path_factory):
    root = celeba_source
    out = tmp_path_factory.mktemp("prepared") / request.param
    resize = None if request.param == "squash" else request.param  # squash is CelebA's default
    manifest = prepare(
        out, "celeba", root / "img_align_celeba", root / "labels", root / "list_eval_partition.txt",
        32, shard_rows=8, progress=False, resize=resize,
    )
    return root, out, manifest


def test_celeba_counts_follow_the_partition_file(celeba):
    root, out, manifest = celeba
    listed = _partition(root / "list_eval_partition.txt")
    for split in SPLITS:
        arrays = read_split(out, split)
        assert sorted(arrays.ids) == sorted(i for i, s in listed.items() if s == split)
        assert manifest.counts[split] == len(arrays) == arrays.images.shape[0] == arrays.masks.shape[0]


def test_celeba_masks_are_exact_and_images_match_the_mode(celeba):
    root, out, manifest = celeba
    squash = manifest.notes["resize"] == "squash"
    for split in SPLITS:
        arrays = read_split(out, split)
        for i, image, mask in zip(arrays.ids, arrays.images, arrays.masks):
            with Image.open(root / "labels" / f"{i}.png") as lab:
                framed = lab if squash else _centre(lab)
                labels = np.asarray(framed.resize((32, 32), Image.Resampling.NEAREST))
            np.testing.assert_array_equal(mask, face_mask(labels, DEFAULT_FACE_CLASSES))
            with Image.open(root / "img_align_celeba" / f"{i}.jpg") as img:
                if squash:
                    expected = _bilinear(img, 32)
                else:
                    expected = np.asarray(_centre(img.convert("RGB")).resize((32, 32), Image.Resampling.BICUBIC))
            assert np.abs(image.astype(float) - expected.astype(float)).max() <= 1


def test_celeba_images_resemble_the_rendered_faces(celeba):
    # Independent of PIL's pipeline: after the JPEG round trip and the resize, each prepared
    # image is still closest to the face it was rendered from.
    _, out, manifest = celeba
    arrays = read_split(out, "train")
    originals, _ = render_faces(30, 48, seed=11)
    # The layout is the 48 px render cut to 40x48: squashed whole, or its centre 40x40.
    rows = slice(None) if manifest.notes["resize"] == "squash" else slice(4, 44)
    crops = [Image.fromarray(o[rows, 4:44]).resize((32, 32), Image.Resampling.BICUBIC) for o in originals]
    refs = np.stack([np.asarray(c) for c in crops]).astype(float)
    for idx, image in zip(arrays.ids, arrays.images):
        errors = np.abs(refs - image.astype(float)).mean(axis=(1, 2, 3))
        assert int(np.argmin(errors)) == int(idx) - 1
        assert errors[int(idx) - 1] < 20


def test_celeba_manifest_fields(celeba):
    root, out, manifest = celeba
    again = load_manifest(out)
    assert again == manifest
    assert manifest.source == "celeba"
    assert manifest.image_size == 32
    assert manifest.notes["resize"] == out.name and manifest.notes["geometry"]  # CelebA's default is squash
    assert manifest.mask_classes == list(DEFAULT_FACE_CLASSES)
    assert manifest.skipped == 0 and manifest.skipped_files == []
    assert manifest.format_version == 1
    assert "list_eval_partition.txt" in manifest.partition
    assert datetime.fromisoformat(manifest.created).tzinfo is not None
    assert sum(s.rows for s in manifest.shards) == 30
    assert all(s.rows <= 8 for s in manifest.shards)
    h = hashlib.sha256("".join(f"{s.file} {s.sha256}\n" for s in manifest.shards).encode()).hexdigest()
    assert manifest.content_hash == h
    for s in manifest.shards:
        assert hashlib.sha256((out / s.file).read_bytes()).hexdigest() == s.sha256
    assert verify(out) == manifest


def _hq_labels(anno: Path, i: int) -> np.ndarray:
    order = ["skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
             "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"]
    labels = None
    for part in order:
        path = anno / str(i // 2000) / f"{i:05d}_{part}.png"
        if path.exists():
            png = np.asarray(Image.open(path))
            labels = np.zeros(png.shape, np.uint8) if labels is None else labels
            labels[png > 0] = CLASS_ID[part]
    return labels


@pytest.fixture(scope="module")
def hq(tmp_path_factory):
    # Masks at half the image size, as in the real release (1024 px images, 512 px masks).
    return write_celebamask_hq_layout(tmp_path_factory.mktemp("hq"), 24, 48, seed=5, mask_size=24)


def test_celebamask_hq_with_partition_via_mapping(hq, tmp_path):
    manifest = prepare(
        tmp_path / "out", "celebamask-hq", hq / "CelebA-HQ-img", hq / "CelebAMask-HQ-mask-anno",
        hq / "list_eval_partition.txt", 32, progress=False,
    )
    celeba_split = _partition(hq / "list_eval_partition.txt")
    mapping = {}
    for line in (hq / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()[1:]:
        idx, _, orig = line.split()
        mapping[idx] = celeba_split[Path(orig).stem]
    assert "mapping" in manifest.partition
    for split in SPLITS:
        arrays = read_split(tmp_path / "out", split)
        assert sorted(arrays.ids) == sorted(i for i, s in mapping.items() if s == split)
        for i, image, mask in zip(arrays.ids, arrays.images, arrays.masks):
            labels = Image.fromarray(_hq_labels(hq / "CelebAMask-HQ-mask-anno", int(i)))
            expected = face_mask(np.asarray(labels.resize((32, 32), Image.Resampling.NEAREST)))
            np.testing.assert_array_equal(mask, expected)
            with Image.open(hq / "CelebA-HQ-img" / f"{i}.jpg") as img:
                ref = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
            assert np.abs(image.astype(int) - ref.astype(int)).max() <= 1


def test_celebamask_hq_without_partition_splits_by_hash(hq, tmp_path):
    args = ("celebamask-hq", hq / "CelebA-HQ-img", hq / "CelebAMask-HQ-mask-anno", None, 32)
    first = prepare(tmp_path / "a", *args, progress=False)
    second = prepare(tmp_path / "b", *args, progress=False)
    assert "sha256" in first.partition
    assert sum(first.counts.values()) == 24
    assert first.counts["train"] > first.counts["val"]
    assert first.content_hash == second.content_hash
    ids = {s: set(read_split(tmp_path / "a", s).ids) for s in SPLITS}
    assert set().union(*ids.values()) == {str(i) for i in range(24)}


def test_synthesize_writes_rendered_faces(tmp_path):
    manifest = synthesize(tmp_path / "syn", 50, 32, seed=9, shard_rows=16, progress=False)
    assert manifest.counts == {"train": 40, "val": 5, "test": 5}
    assert manifest.source == "synthetic" and manifest.seed == 9
    images, labels = render_faces(50, 32, seed=9)
    test = read_split(tmp_path / "syn", "test")
    assert test.ids == [f"{i:06d}" for i in range(45, 50)]
    np.testing.assert_array_equal(test.images, images[45:])
    np.testing.assert_array_equal(test.masks, face_mask(labels[45:]))
    other = synthesize(tmp_path / "other", 50, 32, seed=10, shard_rows=16, progress=False)
    same = synthesize(tmp_path / "same", 50, 32, seed=9, shard_rows=16, progress=False)
    assert other.content_hash != manifest.content_hash
    assert same.content_hash == manifest.content_hash


@pytest.mark.parametrize(
    "kwargs, field",
    [(dict(count=0), "count"), (dict(size=3), "size"), (dict(splits=(0.5, 0.1, 0.1)), "splits"),
     (dict(face_classes=[42]), "face_classes")],
)
def test_synthesize_rejects_bad_arguments(tmp_path, kwargs, field):
    args = dict(out=tmp_path / "x", count=10, size=32, seed=0, progress=False) | kwargs
    with pytest.raises(ValueError, match=field):
        synthesize(**args)
    assert not (tmp_path / "x").exists()


def test_prepare_rejects_an_unknown_resize(celeba_source, tmp_path):
    root = celeba_source
    with pytest.raises(ValueError, match="resize"):
        prepare(tmp_path / "x", "celeba", root / "img_align_celeba", root / "labels", None, 32, progress=False,
                resize="stretch")
    assert not (tmp_path / "x").exists()


def test_prepare_rejects_unknown_source(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        prepare(tmp_path / "x", "nope", tmp_path, tmp_path, None, 32, progress=False)


@pytest.mark.parametrize(("flag", "recorded"), [([], "squash"), (["--resize", "center_crop"], "center_crop")])
def test_the_prepare_command_passes_the_resize_mode(celeba_source, tmp_path, flag, recorded):
    from study.cli import main

    root = celeba_source
    out = tmp_path / "out"
    argv = ["data", "prepare", str(out), "--source", "celeba", "--images", str(root / "img_align_celeba"),
            "--masks", str(root / "labels"), "--size", "32", "--no-progress", *flag]
    assert main(argv) == 0
    assert load_manifest(out).notes["resize"] == recorded
