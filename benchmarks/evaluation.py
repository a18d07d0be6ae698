"""Evaluation: the paper's metric suite over a test split, batched, against one image at a time.

Both sides score the same predictions (the test faces, blurred and noised deterministically) on
the full image and on the face region, as `study.evaluation` does, with all six metrics; LPIPS runs
on an untrained AlexNet trunk here (no weights offline), which costs the same as the real one.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .common import Row, Stopwatch, Target, interleaved, median, ratio

NAME = "evaluation"
TARGET = Target(">=", 10.0)


def predictions(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Stand-ins for reconstructions: blurred, noised copies of the inputs (metric cost does not depend on quality)."""
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * 0.03
    return (blurred + noise).clamp(0, 1)


def score_batched(suite, pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, batch_size: int) -> float:
    clock = Stopwatch()
    for start in range(0, len(pred), batch_size):
        end = start + batch_size
        for region in (None, masks[start:end]):
            suite(pred[start:end], target[start:end], region)
    return len(pred) / clock.lap()


def score_per_image(suite, pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> float:
    clock = Stopwatch()
    for i in range(len(pred)):
        for region in (None, masks[i:i + 1]):
            suite(pred[i:i + 1], target[i:i + 1], region)
    return len(pred) / clock.lap()


def measure(*, size: int, count: int, batch_size: int, repeats: int, lpips: str = "random-backbone") -> list[Row]:
    from data.loader import FaceData
    from data.prepare import synthesize
    from models.metrics import MetricSuite

    with tempfile.TemporaryDirectory(prefix="maskvae-bench-eval-") as scratch:
        synthesize(Path(scratch) / "faces", count=count, size=size, seed=0, progress=False)
        data = FaceData.load(Path(scratch) / "faces", splits=("test",))
        target, masks = data.tensors("test", range(data.size("test")))
    pred = predictions(target)
    suite = MetricSuite(size, lpips=lpips)
    runs = {"per_image": lambda: score_per_image(suite, pred, target, masks),
            "batched": lambda: score_batched(suite, pred, target, masks, batch_size)}
    interleaved(runs, 1)  # warm-up
    samples = interleaved(runs, repeats)
    ours, baseline = median(samples["batched"]), median(samples["per_image"])
    details = {"images": len(pred), "image_size": size, "batch_size": batch_size, "regions": ["full", "face"],
               "lpips": lpips, "threads": torch.get_num_threads(), "samples": samples}
    return [Row(NAME, f"MetricSuite on a test split, {size} px, batches of {batch_size}, 2 regions", "images/s",
                ours, baseline, "one image at a time", TARGET, ratio(ours, baseline), details=details)]


def run(quick: bool) -> list[Row]:
    if quick:
        return measure(size=64, count=400, batch_size=64, repeats=2)
    return measure(size=64, count=1000, batch_size=100, repeats=3)
