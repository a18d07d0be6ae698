"""Evaluation: the paper's metric suite over a test split, batched, against one image at a time.

Both sides score the same predictions (the test faces, blurred and noised deterministically) on
the full image and on the face region in one `MetricSuite.score_regions` call, as
`study.training.evaluation` does, with all six metrics and in the batches it uses; LPIPS runs on an
untrained AlexNet trunk here (no weights offline), which costs the same as the real one.

At the smoke resolution two rows are judged. One runs as the study evaluates: every core,
wall-clock images/s (per-image calls are too small for torch to split across threads, batched ones
are not, and that is part of what batching buys). The other runs on one thread, timed in
CPU-seconds: batching alone, which no load from other processes can move. At 144 px a CPU is bound
by arithmetic whatever the batching, so that row is information; the 144 px target row runs on
CUDA, where per-image calls are bound by kernel launches.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .common import Row, Stopwatch, Target, interleaved, median, paired_ratio, skipped, torch_threads

NAME = "evaluation"
TARGET = Target(">=", 10.0)
REGIONS = "2 regions"


def predictions(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Stand-ins for reconstructions: blurred, noised copies of the inputs (metric cost does not depend on quality)."""
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * 0.03
    return (blurred + noise).clamp(0, 1)


def _timed(score: Callable[[], None], count: int, device: torch.device, cpu_clock: bool) -> float:
    """Images per second (per CPU-second with `cpu_clock`) of one pass of `score` over `count` images."""
    clock = Stopwatch(cpu=cpu_clock)
    score()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count / clock.lap()


def score_batched(suite, pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, batch_size: int,
                  cpu_clock: bool = True) -> float:
    """Images per (CPU-)second, in batches of `batch_size`."""
    def score() -> None:
        for start in range(0, len(pred), batch_size):
            end = start + batch_size
            suite.score_regions(pred[start:end], target[start:end], {"full": None, "face": masks[start:end]})
    return _timed(score, len(pred), pred.device, cpu_clock)


def score_per_image(suite, pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor,
                    cpu_clock: bool = True) -> float:
    """Images per (CPU-)second, one at a time."""
    return score_batched(suite, pred, target, masks, 1, cpu_clock)


def test_split(size: int, count: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic test faces (images, face masks) as float tensors, as the loader delivers them."""
    from data.labels import DEFAULT_FACE_CLASSES, mask_lut
    from data.synthetic import render_faces

    images, labels = render_faces(count, size, seed)
    masks = mask_lut(DEFAULT_FACE_CLASSES)[labels]
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).contiguous(),
            torch.from_numpy(masks).unsqueeze(1).float())


def measure_size(size: int, count: int, batch_size: int, repeats: int, threads: int = 1, device: str = "cpu",
                 target: Target | None = TARGET) -> Row:
    """One thread on CPU counts CPU-seconds; more threads, or CUDA, count wall-clock seconds."""
    from models.metrics import MetricSuite
    from tests.helpers.lpips_nets import random_backbone_lpips

    where = torch.device(device)
    cpu_clock = where.type == "cpu" and threads == 1
    images, masks = test_split(size, count)
    pred, images, masks = predictions(images).to(where), images.to(where), masks.to(where)
    # An untrained AlexNet costs what the pretrained one does, and needs no weights file.
    suite = MetricSuite(size, device=where, lpips_model=random_backbone_lpips())
    with torch_threads(threads):
        runs = {"per_image": lambda: score_per_image(suite, pred, images, masks, cpu_clock),
                "batched": lambda: score_batched(suite, pred, images, masks, batch_size, cpu_clock)}
        interleaved(runs, 1)  # warm-up: oneDNN and cuDNN pick their kernels on first use of each shape
        samples = interleaved(runs, repeats)
    ours, baseline = median(samples["batched"]), median(samples["per_image"])
    paired = paired_ratio(samples["batched"], samples["per_image"])
    unit = "images/cpu-s" if cpu_clock else "images/s"
    place = "CUDA" if where.type == "cuda" else f"{threads} thread{'s' if threads > 1 else ''}"
    details = {"images": len(pred), "image_size": size, "batch_size": batch_size, "regions": ["full", "face"],
               "lpips": "untrained AlexNet", "device": where.type, "threads": threads, "clock": "cpu" if cpu_clock else "wall",
               "samples": samples}
    return Row(NAME, f"MetricSuite, {count} test faces at {size} px, batches of {batch_size}, {REGIONS}, {place}",
               unit, ours, baseline, "one image at a time", target, paired, details=details)


def gpu_row(count: int, repeats: int) -> Row:
    from study.training.evaluation import evaluation_batch_size

    measure = f"MetricSuite at 144 px, batches of {evaluation_batch_size(144, 'cuda')}, {REGIONS}, CUDA"
    if not torch.cuda.is_available():
        return skipped(NAME, measure, "images/s", TARGET)
    return measure_size(144, count, evaluation_batch_size(144, "cuda"), repeats, device="cuda")


def measure(smoke_count: int, paper_count: int, gpu_count: int, repeats: int) -> list[Row]:
    """The smoke split's resolution on every core and on one (both judged), the paper's resolution
    on every core (information) and on CUDA (judged), in `study.training.evaluation`'s batches."""
    from study.training.evaluation import evaluation_batch_size

    cores = os.cpu_count() or 1
    return [
        measure_size(32, smoke_count, evaluation_batch_size(32, "cpu"), repeats, threads=cores),
        measure_size(32, smoke_count, evaluation_batch_size(32, "cpu"), repeats, threads=1),
        measure_size(144, paper_count, evaluation_batch_size(144, "cpu"), repeats, threads=cores, target=None),
        gpu_row(gpu_count, repeats),
    ]


def run(quick: bool) -> list[Row]:
    # 32 px is the smoke preset's test split (what CPUs evaluate); 144 px is the paper's.
    if quick:
        return measure(smoke_count=128, paper_count=12, gpu_count=256, repeats=2)
    return measure(smoke_count=384, paper_count=36, gpu_count=1024, repeats=3)
