import numpy as np
import pytest
import torch

from data.loader import FaceData
from data.prepare import synthesize
from tests.helpers.datasets import read_split

COUNT, SIZE = 60, 32


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "ds"
    synthesize(out, COUNT, SIZE, seed=4, shard_rows=16, progress=False)  # train spans 3 shards
    return out


@pytest.fixture(scope="module")
def data(path):
    return FaceData.load(path)


def _keys(images: torch.Tensor) -> list[bytes]:
    return [x.mul(255).round().to(torch.uint8).numpy().tobytes() for x in images]


def test_sizes_ids_and_batch_counts(data, path):
    assert data.manifest.counts == {"train": 48, "val": 6, "test": 6}
    assert data.size("train") == 48
    assert data.ids("val") == read_split(path, "val").ids
    assert data.num_batches("train", 10) == 5
    assert data.num_batches("train", 10, drop_last=True) == 4
    with pytest.raises(ValueError, match="batch_size"):
        data.num_batches("train", 0)


def test_batches_have_the_training_shapes_and_ranges(data):
    batches = list(data.batches("train", 10))
    assert [b[0].shape[0] for b in batches] == [10, 10, 10, 10, 8]
    for images, masks in batches:
        assert images.dtype == torch.float32 and masks.dtype == torch.float32
        assert images.shape[1:] == (3, SIZE, SIZE) and masks.shape[1:] == (1, SIZE, SIZE)
        assert images.is_contiguous() and masks.is_contiguous()
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
    masks = torch.cat([m for _, m in batches])
    assert 0.05 < masks.mean() < 0.9


def test_unshuffled_batches_equal_the_stored_rows(data, path):
    stored = read_split(path, "train")
    images = torch.cat([x for x, _ in data.batches("train", 7)])
    masks = torch.cat([m for _, m in data.batches("train", 7)])
    expected = torch.from_numpy(stored.images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    torch.testing.assert_close(images, expected)
    np.testing.assert_array_equal(masks[:, 0].numpy(), stored.masks)


def test_shuffle_covers_every_sample_once_and_differs_per_epoch(data):
    reference = _keys(torch.cat([x for x, _ in data.batches("train", 48)]))
    index = {k: i for i, k in enumerate(reference)}
    assert len(index) == 48  # samples are distinguishable
    orders = {}
    for epoch in (0, 1):
        keys = _keys(torch.cat([x for x, _ in data.batches("train", 9, shuffle=True, seed=1, epoch=epoch)]))
        orders[epoch] = [index[k] for k in keys]
        assert sorted(orders[epoch]) == list(range(48))
    assert orders[0] != orders[1]
    assert orders[0] != list(range(48))


def test_shuffle_is_reproducible_per_seed_and_epoch(data):
    def order(seed, epoch):
        return [x for x, _ in data.batches("train", 8, shuffle=True, seed=seed, epoch=epoch)]

    for a, b in zip(order(3, 2), order(3, 2)):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(order(3, 2), order(4, 2)))


def test_images_and_masks_stay_paired_when_shuffled(data):
    plain = {k: m for k, m in zip(_keys(data.tensors("train", range(48))[0]), data.tensors("train", range(48))[1])}
    for images, masks in data.batches("train", 12, shuffle=True, seed=5, epoch=3):
        for k, m in zip(_keys(images), masks):
            assert torch.equal(plain[k], m)


def test_drop_last_and_limit(data):
    assert [x.shape[0] for x, _ in data.batches("train", 20, drop_last=True)] == [20, 20]
    assert len(list(data.batches("train", 5, limit=3))) == 3
    assert len(list(data.batches("train", 5, limit=100))) == 10


def test_tensors_returns_a_fixed_sample(data):
    images, masks = data.tensors("test", [4, 0])
    batch_images, batch_masks = next(data.batches("test", 6))
    assert torch.equal(images, batch_images[[4, 0]])
    assert torch.equal(masks, batch_masks[[4, 0]])
    with pytest.raises(IndexError):
        data.tensors("test", [6])


def test_only_requested_splits_are_loaded(path):
    data = FaceData.load(path, splits=("val",))
    assert data.size("val") == 6
    with pytest.raises(KeyError, match="train"):
        data.size("train")


def test_copied_data_gives_the_same_batches(data, path):
    # The accelerator path: one tensor per split instead of per-shard views of the memory map.
    copied = FaceData.load(path, copy=True)
    for (a, am), (b, bm) in zip(data.batches("train", 10, shuffle=True, epoch=2),
                                copied.batches("train", 10, shuffle=True, epoch=2), strict=True):
        assert torch.equal(a, b) and torch.equal(am, bm)


@pytest.mark.parametrize("copy", [False, True], ids=["mapped shards", "one copied tensor"])
def test_channels_last_batches_hold_the_same_values_as_contiguous_ones(data, path, copy):
    # On CPU channels-last batches are converted row by row while copied: a separate code path.
    source = FaceData.load(path, copy=copy)
    kwargs = dict(shuffle=True, epoch=3, seed=1)
    for (a, am), (b, bm) in zip(data.batches("train", 10, **kwargs),
                                source.batches("train", 10, channels_last=True, **kwargs), strict=True):
        assert b.is_contiguous(memory_format=torch.channels_last) and b.dtype == torch.float32
        assert torch.equal(a, b) and torch.equal(am, bm) and bm.shape == am.shape
    fixed, fixed_last = data.tensors("val", [0, 5, -1]), source.tensors("val", [0, 5, -1], channels_last=True)
    assert all(torch.equal(x, y) for x, y in zip(fixed, fixed_last))
