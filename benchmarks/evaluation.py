"""Evaluation: the paper's metric suite over a test split, batched, against one image at a time.

Both sides score the same predictions (the test faces, blurred and noised deterministically) on
the full image and on the face region, as `study.evaluation` does, with all six metrics; LPIPS runs
on an untrained AlexNet trunk here (no weights offline), which costs the same as the real one.
One thread on both sides, timed in CPU-seconds: with several threads a loaded machine stalls the
per-image loop's many tiny parallel regions far more than the batched ones, and the ratio would
measure the load.
"""
from __future__ import annotations

import torch

from .common import Row, Stopwatch, Target, interleaved, median, paired_ratio, torch_threads

NAME = "evaluation"
TARGET = Target(">=", 10.0)


def predictions(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Stand-ins for reconstructions: blurred, noised copies of the inputs (metric cost does not depend on quality)."""
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * 0.03
    return (blurred + noise).clamp(0, 1)


def score_batched(suite, pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, batch_size: int) -> float:
    """Images per CPU-second, in batches of `batch_size`."""
    clock = Stopwatch(cpu=True)
    for start in range(0, len(pred), batch_size):
        end = start + batch_size
        for region in (None, masks[start:end]):
            suite(pred[start:end], target[start:end], region)
    return len(pred) / clock.lap()


def score_per_image(suite, pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> float:
    """Images per CPU-second, one at a time."""
    clock = Stopwatch(cpu=True)
    for i in range(len(pred)):
        for region in (None, masks[i:i + 1]):
            suite(pred[i:i + 1], target[i:i + 1], region)
    return len(pred) / clock.lap()


def test_split(size: int, count: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic test faces (images, face masks) as float tensors, as the loader delivers them."""
    from data.labels import DEFAULT_FACE_CLASSES, mask_lut
    from data.synthetic import render_faces

    images, labels = render_faces(count, size, seed)
    masks = mask_lut(DEFAULT_FACE_CLASSES)[labels]
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).contiguous(),
            torch.from_numpy(masks).unsqueeze(1).float())


def measure_size(size: int, count: int, batch_size: int, repeats: int, lpips: str = "random-backbone") -> Row:
    from models.metrics import MetricSuite

    target, masks = test_split(size, count)
    pred = predictions(target)
    suite = MetricSuite(size, lpips=lpips)
    with torch_threads(1):
        runs = {"per_image": lambda: score_per_image(suite, pred, target, masks),
                "batched": lambda: score_batched(suite, pred, target, masks, batch_size)}
        interleaved(runs, 1)  # warm-up: oneDNN builds its kernels on first use of each shape
        samples = interleaved(runs, repeats)
    ours, baseline = median(samples["batched"]), median(samples["per_image"])
    paired = paired_ratio(samples["batched"], samples["per_image"])
    details = {"images": len(pred), "image_size": size, "batch_size": batch_size, "regions": ["full", "face"],
               "lpips": lpips, "threads": 1, "samples": samples}
    return Row(NAME, f"MetricSuite, {count} test faces at {size} px, batches of {batch_size}, 2 regions, 1 core",
               "images/cpu-s", ours, baseline, "one image at a time", TARGET, paired, details=details)


def measure(sizes: list[tuple[int, int, int]], repeats: int) -> list[Row]:
    """One row per (image size, test faces, batch size)."""
    return [measure_size(size, count, batch_size, repeats) for size, count, batch_size in sizes]


def run(quick: bool) -> list[Row]:
    # 32 px is the smoke preset's test split (what CPUs evaluate); 144 px is the paper's.
    if quick:
        return measure([(32, 64, 64), (144, 8, 8)], repeats=2)
    return measure([(32, 256, 64), (144, 32, 8)], repeats=3)
