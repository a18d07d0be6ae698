"""Prepared shards -> batches of tensors, held as uint8 on the training device.

Each split is held as uint8 where the batches are made: on CPU as views on the memory-mapped
shards (processes on one machine share the page cache, nothing is copied), on an accelerator as
one tensor copied there once (a 144 px CelebA train split is ~10 GB). Batches are gathered and
converted to float on that device, so no worker processes or per-batch host copies run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from data.shards import SPLITS, Manifest, load_manifest, read_split_shards


@dataclass
class _Split:
    """A split's rows as one or more parts (one per shard on CPU, where they are mmap views)."""

    ids: list[str]
    images: list[Tensor]  # (n_k, 3, H, W) uint8, channels-last views of the HWC storage
    masks: list[Tensor]  # (n_k, 1, H, W) uint8
    starts: Tensor  # first row of each part, on the data's device

    def gather(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        if len(self.images) == 1:
            return self.images[0].index_select(0, idx), self.masks[0].index_select(0, idx)
        part = torch.searchsorted(self.starts, idx, right=True) - 1
        images = torch.empty((len(idx), *self.images[0].shape[1:]), dtype=torch.uint8, device=idx.device)
        masks = torch.empty((len(idx), *self.masks[0].shape[1:]), dtype=torch.uint8, device=idx.device)
        for k in part.unique().tolist():
            rows = (part == k).nonzero().squeeze(1)
            local = idx.index_select(0, rows) - self.starts[k]
            images[rows] = self.images[k].index_select(0, local)
            masks[rows] = self.masks[k].index_select(0, local)
        return images, masks


def _as_tensor(array: np.ndarray) -> Tensor:
    with warnings.catch_warnings():
        # Memory-mapped shards are read-only; these tensors are only ever read.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(array)


def _to_device(parts: list[np.ndarray], shape: tuple[int, ...], device: torch.device, copy: bool) -> list[Tensor]:
    """CPU: the shard views themselves (no copy). Elsewhere: one tensor, filled shard by shard."""
    if device.type == "cpu" and not copy:
        return [_as_tensor(p) for p in parts] or [torch.empty((0, *shape), dtype=torch.uint8)]
    out = torch.empty((sum(len(p) for p in parts), *shape), dtype=torch.uint8, device=device)
    start = 0
    for p in parts:
        out[start : start + len(p)].copy_(_as_tensor(p))
        start += len(p)
    return [out]


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed per (seed, epoch): every epoch differs, each is reproducible."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class FaceData:
    """A prepared dataset's splits as uint8 tensors on one device."""

    def __init__(self, manifest: Manifest, splits: dict[str, _Split], device: torch.device) -> None:
        self.manifest = manifest
        self.device = device
        self._splits = splits

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        splits: Sequence[str] = SPLITS,
        device: str | torch.device = "cpu",
        copy: bool = False,
    ) -> FaceData:
        """Load ``splits`` of the dataset at ``path`` (local or URI) onto ``device``.

        ``copy`` reads CPU data into memory instead of mapping it, e.g. for shards on a slow
        network filesystem; off CPU the data is always copied to the device.
        """
        device = torch.device(device)
        manifest = load_manifest(path)
        s = manifest.image_size
        loaded: dict[str, _Split] = {}
        for split in splits:
            parts = read_split_shards(path, split, manifest)
            images = _to_device([p.images for p in parts], (s, s, 3), device, copy)
            masks = _to_device([p.masks for p in parts], (s, s), device, copy)
            sizes = torch.tensor([0] + [len(m) for m in masks[:-1]], dtype=torch.long)
            loaded[split] = _Split(
                ids=[i for p in parts for i in p.ids],
                images=[x.permute(0, 3, 1, 2) for x in images],
                masks=[m.unsqueeze(1) for m in masks],
                starts=sizes.cumsum(0).to(device),
            )
        return cls(manifest, loaded, device)

    def _split(self, split: str) -> _Split:
        if split not in self._splits:
            raise KeyError(f"split {split!r} is not loaded (loaded: {sorted(self._splits)})")
        return self._splits[split]

    @property
    def image_size(self) -> int:
        return self.manifest.image_size

    def size(self, split: str) -> int:
        return len(self._split(split).ids)

    def ids(self, split: str) -> list[str]:
        return list(self._split(split).ids)

    def num_batches(self, split: str, batch_size: int, drop_last: bool = False) -> int:
        _check_batch_size(batch_size)
        n = self.size(split)
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (images (B,3,H,W) float in [0,1], masks (B,1,H,W) float in {0,1}).

        ``limit`` caps the number of batches. Shuffling draws a permutation from a generator
        seeded by (seed, epoch).
        """
        data = self._split(split)
        n = self.num_batches(split, batch_size, drop_last)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit: expected a non-negative integer or None, got {limit!r}")
            n = min(n, limit)
        order: Tensor | None = None
        if shuffle:
            gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            order = torch.randperm(self.size(split), generator=gen).to(self.device)
        for b in range(n):
            lo, hi = b * batch_size, min((b + 1) * batch_size, self.size(split))
            idx = order[lo:hi] if order is not None else torch.arange(lo, hi, device=self.device)
            yield _convert(*data.gather(idx))

    def tensors(self, split: str, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """A fixed set of samples (e.g. for reconstruction grids), converted like a batch."""
        data = self._split(split)
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        n = self.size(split)
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"indices: out of range for split {split!r} of {n} samples")
        idx = (idx % max(n, 1)).to(self.device)
        return _convert(*data.gather(idx))


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")


def _convert(images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    # One copy each: uint8 (channels-last storage) -> contiguous NCHW float.
    images = images.to(dtype=torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    return images, masks.to(dtype=torch.float32, memory_format=torch.contiguous_format)
