"""Trainer throughput on a CUDA GPU: maskvae's fast path against eager fp32, and packed trials.

Fast path: `train()` at 144 px, batch 32, the paper's network, with `fast_path=False` (eager fp32)
against `fast_path=True` (bf16 autocast + channels_last) and against that plus `compile=True`;
images/s is the trainer's own per-epoch figure, the first epoch (cuDNN autotuning, compilation)
left out. The loss curves (mean training loss per epoch, same seed and batches) must stay within
CURVE_TOLERANCE of fp32's. Packing: four processes train at once on one GPU, as Ray runs trials
with `gpus_per_trial: 0.25`; their aggregate images/s against one process alone.
Without CUDA the rows say "no GPU"; every function also runs on CPU (the tests use that).
"""
from __future__ import annotations

import os
import queue as queue_module
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .common import Row, Target, ratio, skipped
from .trainer_throughput import train_config

NAME = "trainer_gpu"
FAST_TARGET = Target(">=", 2.5)
CURVE_TOLERANCE = 0.05
CURVE_TARGET = Target("<=", CURVE_TOLERANCE, on="value")
PACK_TARGET = Target(">=", 2.0)
VARIANTS: dict[str, dict[str, bool]] = {
    "eager fp32": {"fast_path": False},
    "bf16 + channels_last": {"fast_path": True},
    "bf16 + channels_last + torch.compile": {"fast_path": True, "compile": True},
}


def tiled_dataset(path: Path, size: int, distinct: int, copies: int, seed: int = 0) -> Path:
    """A prepared dataset whose train split repeats `distinct` rendered faces `copies` times.

    Throughput needs long epochs, not many distinct faces: rendering is the slow part here.
    """
    from data.labels import DEFAULT_FACE_CLASSES, mask_lut
    from data.shards import DatasetWriter
    from data.synthetic import render_faces

    images, labels = render_faces(distinct, size, seed)
    masks = mask_lut(DEFAULT_FACE_CLASSES)[labels]
    held_out = max(1, distinct // 4)
    with DatasetWriter(path, source="synthetic", image_size=size, mask_classes=DEFAULT_FACE_CLASSES, seed=seed,
                       partition=f"benchmark: {distinct} faces, train repeats them {copies} times") as writer:
        for copy in range(copies):
            writer.add("train", [f"{copy:03d}-{i:05d}" for i in range(distinct)], images, masks)
        writer.add("val", [f"val-{i:05d}" for i in range(held_out)], images[:held_out], masks[:held_out])
        writer.add("test", [f"test-{i:05d}" for i in range(held_out)], images[:held_out], masks[:held_out])
    return path


def fast_path_runs(data, device: str, *, width: float, latent_dim: int, batch_size: int, epochs: int,
                   batches: int, variants: dict[str, dict[str, bool]] = VARIANTS) -> dict[str, dict[str, Any]]:
    """Per variant: steady images/s and the per-epoch training loss."""
    from study.training.trainer import train

    out: dict[str, dict[str, Any]] = {}
    for name, flags in variants.items():
        config = train_config(width=width, latent_dim=latent_dim, batch_size=batch_size, epochs=epochs,
                              batches=batches, device=device, sample_faces=0, **flags)
        history: list[dict[str, float]] = []
        with tempfile.TemporaryDirectory(prefix="maskvae-bench-gpu-") as workdir:
            train(config, data, lambda metrics, _: history.append(metrics), workdir=Path(workdir))
        steady = history[1:] or history
        out[name] = {"images_per_s": statistics.median(h["images_per_s"] for h in steady),
                     "first_epoch_s": history[0]["epoch_seconds"],
                     "train_loss": [h["train_total"] for h in history]}
    return out


def curve_deviation(reference: list[float], other: list[float]) -> float:
    """Largest relative difference between two per-epoch loss curves."""
    if len(reference) != len(other) or not reference:
        raise ValueError(f"loss curves differ in length ({len(reference)} vs {len(other)} epochs)")
    return max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(reference, other))


def _pack_worker(rank: int, path: str, device: str, config_json: str, threads: int, barrier, queue) -> None:
    """One packed trial: its own process and copy of the data, timed between a shared start and its end."""
    from data.loader import FaceData
    from study.config.train import TrainConfig
    from study.training.trainer import train

    torch.set_num_threads(threads)  # its share of the cores, as Ray's cpus_per_trial gives it
    try:
        config = TrainConfig.from_json(config_json)
        data = FaceData.load(path, splits=("train", "val"), device=device)
        with tempfile.TemporaryDirectory(prefix="maskvae-bench-pack-") as workdir:
            train(config.model_copy(update={"epochs": 1}), data, workdir=Path(workdir))  # warm-up
            barrier.wait()
            started = time.time()  # wall clock: comparable across processes
            train(config, data, workdir=Path(workdir))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            queue.put((rank, started, time.time(), config.epochs * config.max_train_batches * config.batch_size, None))
    except Exception as error:  # reported to the parent, which raises it with the rank
        barrier.abort()
        queue.put((rank, 0.0, 0.0, 0, f"{error.__class__.__name__}: {error}"))


def packed_rate(path: Path, device: str, config, processes: int, timeout_s: float = 600.0) -> float:
    """Aggregate images/s of `processes` identical trials sharing `device`, all started together."""
    context = torch.multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes), context.Queue()
    threads = max(1, (os.cpu_count() or 1) // processes)
    workers = [context.Process(target=_pack_worker,
                               args=(rank, str(path), device, config.to_json(), threads, barrier, queue))
               for rank in range(processes)]
    for worker in workers:
        worker.start()
    results, deadline = [], time.monotonic() + timeout_s
    try:
        while len(results) < processes:
            try:
                results.append(queue.get(timeout=1.0))
            except queue_module.Empty:
                # A worker that died without a word (killed, out of memory) ends the wait at once.
                dead = [f"packed trial {rank} exited with code {w.exitcode}" for rank, w in enumerate(workers)
                        if w.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError("; ".join(dead) or f"packed trials did not finish within {timeout_s:.0f} s")
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    errors = [f"packed trial {rank}: {error}" for rank, _, _, _, error in results if error]
    if errors:
        raise RuntimeError("; ".join(errors))
    start, end = min(r[1] for r in results), max(r[2] for r in results)
    return sum(r[3] for r in results) / (end - start)


def measure(device: str, *, size: int, distinct: int, copies: int, width: float, latent_dim: int, batch_size: int,
            epochs: int, batches: int, packed: int) -> list[Row]:
    from data.loader import FaceData

    with tempfile.TemporaryDirectory(prefix="maskvae-bench-gpu-") as scratch:
        path = tiled_dataset(Path(scratch) / "faces", size, distinct, copies)
        data = FaceData.load(path, splits=("train", "val"), device=device)
        runs = fast_path_runs(data, device, width=width, latent_dim=latent_dim, batch_size=batch_size, epochs=epochs,
                              batches=batches)
        del data
        config = train_config(width=width, latent_dim=latent_dim, batch_size=batch_size, epochs=epochs,
                              batches=batches, device=device, sample_faces=0, fast_path=True)
        alone = packed_rate(path, device, config, 1)
        together = packed_rate(path, device, config, packed)
    fp32 = runs["eager fp32"]
    where = f"{size} px, batch {batch_size}, width {width:g}"
    rows = []
    for name, result in runs.items():
        if name == "eager fp32":
            continue
        first_epoch_s = {name: result["first_epoch_s"], "eager fp32": fp32["first_epoch_s"]}
        rows.append(Row(NAME, f"{name} vs eager fp32 ({where})", "images/s", result["images_per_s"],
                        fp32["images_per_s"], "eager fp32", FAST_TARGET,
                        ratio(result["images_per_s"], fp32["images_per_s"]), details={"first_epoch_s": first_epoch_s}))
        deviation = curve_deviation(fp32["train_loss"], result["train_loss"])
        rows.append(Row(NAME, f"loss curve of {name} vs fp32 (max relative difference per epoch)", "fraction",
                        deviation, None, "eager fp32's curve", CURVE_TARGET,
                        details={"fp32": fp32["train_loss"], name: result["train_loss"]}))
    rows.append(Row(NAME, f"{packed} packed trials on one GPU vs 1 ({where}, bf16)", "images/s (sum)", together, alone,
                    "one trial alone", PACK_TARGET, ratio(together, alone)))
    return rows


def no_gpu_rows() -> list[Row]:
    rows = []
    for name in VARIANTS:
        if name != "eager fp32":
            rows.append(skipped(NAME, f"{name} vs eager fp32 (144 px, batch 32)", "images/s", FAST_TARGET))
            rows.append(skipped(NAME, f"loss curve of {name} vs fp32", "fraction", CURVE_TARGET))
    rows.append(skipped(NAME, "4 packed trials on one GPU vs 1 (144 px, batch 32)", "images/s (sum)", PACK_TARGET))
    return rows


def run(quick: bool) -> list[Row]:
    if not torch.cuda.is_available():
        return no_gpu_rows()
    epochs, batches = (3, 20) if quick else (5, 60)
    return measure("cuda", size=144, distinct=128, copies=16, width=1.0, latent_dim=512, batch_size=32,
                   epochs=epochs, batches=batches, packed=4)

