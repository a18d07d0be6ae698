import json

import numpy as np
import pytest

from data.errors import DatasetError, ShardError
from data.prepare import synthesize
from data.manifest import load_manifest
from data.shard_reader import verify
from tests.helpers.datasets import read_split
from data.shards import DatasetWriter
from tests.helpers.datasets import write_dataset


def _rows(n: int, size: int = 8, offset: int = 0):
    rng = np.random.default_rng(offset)
    ids = [f"r{offset + i}" for i in range(n)]
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (n, size, size), dtype=np.uint8)
    return ids, images, masks


@pytest.fixture
def dataset(tmp_path):
    out = tmp_path / "ds"
    synthesize(out, 40, 16, seed=2, shard_rows=10, progress=False)
    return out


def test_multi_shard_split_reads_back_in_order(tmp_path):
    ids, images, masks = _rows(23)
    batches = [(ids[:5], images[:5], masks[:5]), (ids[5:], images[5:], masks[5:])]
    manifest = write_dataset(tmp_path / "ds", "test", 8, [1], {"train": batches}, shard_rows=7)
    assert [s.rows for s in manifest.shards] == [7, 7, 7, 2]
    assert [s.file for s in manifest.shards] == [f"train-{k:05d}.arrow" for k in range(4)]
    back = read_split(tmp_path / "ds", "train")
    assert back.ids == ids
    np.testing.assert_array_equal(back.images, images)
    np.testing.assert_array_equal(back.masks, masks)
    assert len(read_split(tmp_path / "ds", "val")) == 0


def test_single_shard_is_a_zero_copy_view(tmp_path):
    ids, images, masks = _rows(6)
    write_dataset(tmp_path / "ds", "test", 8, [1], {"val": [(ids, images, masks)]})
    back = read_split(tmp_path / "ds", "val")
    # Views on the read-only memory map: no owned, writable copy was made.
    assert not back.images.flags.owndata and not back.images.flags.writeable
    assert not back.masks.flags.owndata and not back.masks.flags.writeable
    np.testing.assert_array_equal(back.images, images)


def test_truncated_shard_is_named_on_read(dataset):
    shard = dataset / "train-00001.arrow"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError) as err:
        read_split(dataset, "train")
    assert "train-00001.arrow" in str(err.value)
    assert err.value.shard.endswith("train-00001.arrow")
    read_split(dataset, "val")  # other splits stay readable


def test_changed_byte_is_named_by_verify(dataset):
    verify(dataset)
    shard = dataset / "val-00000.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="val-00000.arrow"):
        verify(dataset)


def test_verify_names_every_bad_shard(dataset):
    (dataset / "test-00000.arrow").unlink()
    for name in ("train-00000.arrow", "train-00002.arrow"):
        data = bytearray((dataset / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (dataset / name).write_bytes(bytes(data))
    with pytest.raises(ShardError) as err:
        verify(dataset)
    bad = ("train-00000.arrow", "train-00002.arrow", "test-00000.arrow")
    assert [s.rsplit("/", 1)[-1] for s in err.value.shards] == list(bad)
    assert err.value.shard.endswith("train-00000.arrow")
    assert str(err.value).startswith("3 shards are missing or changed")
    for name in bad:
        assert name in str(err.value)
    assert "train-00001.arrow" not in str(err.value)


def test_missing_shard_is_named(dataset):
    (dataset / "test-00000.arrow").unlink()
    with pytest.raises(ShardError, match="test-00000.arrow"):
        read_split(dataset, "test")
    with pytest.raises(ShardError, match="test-00000.arrow"):
        verify(dataset)


def test_row_count_disagreeing_with_manifest_is_named(dataset):
    raw = json.loads((dataset / "manifest.json").read_text())
    raw["shards"][0]["rows"] += 1
    raw["counts"]["train"] += 1
    (dataset / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ShardError, match="train-00000.arrow.*rows"):
        read_split(dataset, "train")


def test_image_size_disagreeing_with_shards_is_named(dataset):
    raw = json.loads((dataset / "manifest.json").read_text())
    raw["image_size"] = 32
    (dataset / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ShardError, match="train-00000.arrow"):
        read_split(dataset, "train")


def test_manifest_missing_or_invalid_is_named(tmp_path, dataset):
    with pytest.raises(DatasetError, match="manifest.json"):
        load_manifest(tmp_path / "nothing")
    (dataset / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json"):
        load_manifest(dataset)
    (dataset / "manifest.json").write_text(json.dumps({"format_version": 1, "source": "x"}))
    with pytest.raises(DatasetError) as err:
        load_manifest(dataset)
    assert "image_size" in str(err.value) and "manifest.json" in str(err.value)


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="boom"):
        with DatasetWriter(out, source="t", image_size=8, mask_classes=[1], shard_rows=2) as w:
            w.add("train", *_rows(5))  # shards already on disk in the temp dir
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(tmp_path, dataset):
    before = load_manifest(dataset)
    with pytest.raises(DatasetError, match="not empty \\(pass --overwrite to replace it\\)"):
        synthesize(dataset, 10, 16, seed=3, progress=False)
    assert load_manifest(dataset) == before
    after = synthesize(dataset, 10, 16, seed=3, progress=False, overwrite=True)
    assert load_manifest(dataset) == after != before
    files = sorted(p.name for p in dataset.iterdir())
    assert files == ["manifest.json", "test-00000.arrow", "train-00000.arrow", "val-00000.arrow"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_writer_rejects_bad_rows(tmp_path):
    ids, images, masks = _rows(3)
    with DatasetWriter(tmp_path / "ds", source="t", image_size=8, mask_classes=[1]) as w:
        with pytest.raises(ValueError, match="masks"):
            w.add("train", ids, images, masks * 3)
        with pytest.raises(ValueError, match="images"):
            w.add("train", ids, images[:, :4], masks)
        with pytest.raises(ValueError, match="split"):
            w.add("holdout", ids, images, masks)
        w.add("train", ids, images, masks)
        with pytest.raises(DatasetError, match="r0"):
            w.add("val", ids[:1], images[:1], masks[:1])
    assert load_manifest(tmp_path / "ds").counts == {"train": 3, "val": 0, "test": 0}


def test_uri_paths_go_through_pyarrow_filesystems(tmp_path, dataset):
    uri = f"file://{tmp_path}/remote"
    manifest = synthesize(uri, 40, 16, seed=2, shard_rows=10, progress=False)
    assert manifest.content_hash == load_manifest(dataset).content_hash
    assert verify(uri) == load_manifest(uri)
    back, local = read_split(uri, "train"), read_split(dataset, "train")
    assert back.ids == local.ids
    np.testing.assert_array_equal(back.images, local.images)
    with pytest.raises(DatasetError, match="already"):
        synthesize(uri, 10, 16, seed=2, progress=False)
