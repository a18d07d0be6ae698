"""Input pipeline: prepared shards -> training batches, against decoding the source files per batch.

Both sides produce the same thing from the same faces: shuffled (images, masks) float batches at
the training size, on one core. The reference reads CelebA's layout the way a from-folders loader
does: per face, decode the JPEG and the label PNG, centre-crop, resize (PIL, bicubic / nearest),
map labels to the face mask, stack and convert. maskvae reads the prepared, memory-mapped shards
(written by `data.prepare.prepare` from that very folder, several shards as for real CelebA).
Throughput is images per CPU-second of this process (one thread), so other work on the machine
does not enter the ratio; the ratio is the median of per-round ratios of interleaved samples.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .common import Row, Stopwatch, Target, interleaved, median, paired_ratio, torch_threads

NAME = "input_pipeline"
TARGET = Target(">=", 20.0)
CELEBA_SIZE = (178, 218)  # CelebA's aligned crops (width, height)


class FolderLoader:
    """The reference: every batch decoded and resized from the source files."""

    def __init__(self, root: Path, ids: list[str], size: int) -> None:
        from data.labels import DEFAULT_FACE_CLASSES, mask_lut

        self.images = [root / "img_align_celeba" / f"{i}.jpg" for i in ids]
        self.labels = [root / "labels" / f"{i}.png" for i in ids]
        self.size = size
        self.lut = mask_lut(DEFAULT_FACE_CLASSES)

    def _load(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        from data.geometry import centre_crop_box

        with Image.open(self.images[k]) as image:
            box = centre_crop_box(*image.size)
            rgb = image.convert("RGB").crop(box).resize((self.size, self.size), Image.Resampling.BICUBIC)
        with Image.open(self.labels[k]) as labels:
            small = labels.crop(box).resize((self.size, self.size), Image.Resampling.NEAREST)
        return np.asarray(rgb), self.lut[np.asarray(small)]

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Faces `indices` as the trainer takes them: float (B,3,H,W) in [0,1] and (B,1,H,W) masks."""
        pairs = [self._load(k) for k in indices]
        images = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float().div_(255.0)
        masks = torch.from_numpy(np.stack([p[1] for p in pairs])).unsqueeze(1).float()
        return images.contiguous(), masks

    def batches(self, batch_size: int, epoch: int):
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(epoch)).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield self.batch(order[start:start + batch_size])


def _rate(batches) -> float:
    """Images per CPU-second to drain an iterator of (images, masks) batches."""
    clock = Stopwatch(cpu=True)
    count = sum(images.shape[0] for images, _ in batches)
    return count / clock.lap()


def make_dataset(root: Path, count: int, size: int, shard_rows: int) -> tuple[Path, Path]:
    """CelebA's layout rendered by data.synthetic, and the same faces prepared into shards."""
    from data.prepare import prepare
    from tests.helpers.fake_layouts import write_celeba_layout

    source = write_celeba_layout(root / "celeba", count, CELEBA_SIZE, seed=0)
    prepared = root / "prepared"
    prepare(prepared, "celeba", source / "img_align_celeba", source / "labels", source / "list_eval_partition.txt",
            size, shard_rows=shard_rows, progress=False, resize="center_crop")
    return source, prepared


def measure(count: int, size: int = 144, batch_size: int = 32, repeats: int = 5, shard_rows: int = 32,
            min_seconds: float = 0.25) -> list[Row]:
    """`shard_rows` small enough for several shards: a real CelebA train split spans 40 shards of 4096
    rows, so every shuffled batch gathers rows from many of them."""
    from data.loader import FaceData
    from study.training.device import plan_device

    # Batches laid out as the trainer asks for them on a CPU.
    layout = plan_device("cpu").channels_last
    with tempfile.TemporaryDirectory(prefix="maskvae-bench-input-") as scratch:
        source, prepared = make_dataset(Path(scratch), count, size, shard_rows)
        with torch_threads(1):
            data = FaceData.load(prepared, splits=("train",))
            reference = FolderLoader(source, data.ids("train"), size)
            shards = len(data.manifest.shards_of("train"))
            epochs = {"reference": 0, "shards": 0}

            def run_reference() -> float:
                epochs["reference"] += 1
                return _rate(reference.batches(batch_size, epochs["reference"]))

            def run_shards() -> float:
                # Several epochs per sample, so one sample lasts long enough to time well.
                clock, seen = Stopwatch(cpu=True), 0
                while True:
                    epochs["shards"] += 1
                    seen += sum(x.shape[0] for x, _ in data.batches("train", batch_size, shuffle=True, drop_last=True,
                                                                    epoch=epochs["shards"], channels_last=layout))
                    if seen and clock.elapsed() >= min_seconds:
                        return seen / clock.elapsed()

            run_reference(), run_shards()  # warm the page cache and the allocator for both
            samples = interleaved({"reference": run_reference, "shards": run_shards}, repeats)
            same = same_pixels(reference, data, min(batch_size, data.size("train")), layout)
            images = data.size("train")
    ours, baseline = median(samples["shards"]), median(samples["reference"])
    paired = paired_ratio(samples["shards"], samples["reference"])
    details = {"images": images, "image_size": size, "source_size": list(CELEBA_SIZE), "batch_size": batch_size,
               "shards": shards, "threads": 1, "channels_last": layout, "same_pixels": same, "samples": samples}
    note = "" if same else "the two sides decoded different pixels"
    return [Row(NAME, f"shards -> batches, {size} px, batch {batch_size}, {shards} shards, 1 core", "images/cpu-s",
                ours, baseline, "decode JPEG+PNG from folders, PIL resize", TARGET, paired, note=note,
                details=details)]


def same_pixels(reference: FolderLoader, data, count: int, channels_last: bool = False) -> bool:
    """Whether both sides deliver identical values for the first `count` faces."""
    indices = list(range(count))
    ours, theirs = data.tensors("train", indices, channels_last=channels_last), reference.batch(indices)
    return all(torch.equal(a, b) for a, b in zip(ours, theirs))


def run(quick: bool) -> list[Row]:
    return measure(count=96, repeats=3) if quick else measure(count=256, repeats=5)
