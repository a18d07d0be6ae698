"""Trainer throughput on CPU: `study.trainer.train()` against a plain hand-written PyTorch loop.

Same FaceVAE, same seed, same batches in the same order (the loader's per-epoch permutation), same
loss function and optimiser steps: the two runs compute the same losses (checked), so the ratio is
what the framework costs. `train()` is timed end to end (model build, every epoch's validation
batch, checkpoint and sample grid included); the plain loop trains from float tensors held in
memory, the leanest loop one could write.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from .common import Row, Stopwatch, Target, interleaved, median, ratio

NAME = "trainer"
TARGET = Target(">=", 0.95)
HYPOTHESIS = "ssim+l2/mask"


def train_config(*, width: float, latent_dim: int, batch_size: int, epochs: int, batches: int, device: str = "cpu",
                 fast_path: bool = True, compile: bool = False, seed: int = 0, sample_faces: int = 8):
    """The run both sides train: `batches` steps per epoch, one validation batch per epoch."""
    from study.config import TrainConfig

    return TrainConfig(hypothesis=HYPOTHESIS, epochs=epochs, batch_size=batch_size, lr=1e-4, kl_weight=1e-3,
                       model={"width": width, "latent_dim": latent_dim}, device=device, fast_path=fast_path,
                       compile=compile, max_train_batches=batches, max_val_batches=1, seed=seed,
                       sample_faces=sample_faces)


def plain_loop(config, data) -> tuple[float, float]:
    """(images/s, last epoch's mean loss) of a hand-written loop doing train()'s steps."""
    from data.loader import epoch_seed
    from models.losses import LossWeights, loss_terms
    from models.vae import FaceVAE

    images, masks = data.tensors("train", range(data.size("train")))  # float, in memory, before the clock
    clock = Stopwatch()
    torch.manual_seed(config.seed)
    model = FaceVAE(image_size=data.image_size, width=config.model.width, latent_dim=config.model.latent_dim,
                    use_mask=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    weights = LossWeights(**config.loss_weights.model_dump())
    model.train()
    seen, loss_sum = 0, 0.0
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)))
        total = torch.zeros(())
        for b in range(config.max_train_batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            x, m = images[idx], masks[idx]
            out = model(x, m)
            loss = loss_terms(out, x, m, config.parsed_hypothesis.loss, config.kl_weight, weights)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            total += loss.detach() * len(idx)
            seen += len(idx)
        loss_sum = float(total) / (config.max_train_batches * config.batch_size)
    return seen / clock.lap(), loss_sum


def framework(config, data, workdir: Path) -> tuple[float, float]:
    """(images/s, last epoch's mean loss) of train(), timed end to end."""
    from study.trainer import train

    clock = Stopwatch()
    metrics = train(config, data, workdir=workdir)
    elapsed = clock.lap()
    return config.epochs * config.max_train_batches * config.batch_size / elapsed, metrics["train_total"]


def measure(*, size: int, count: int, width: float, latent_dim: int, batch_size: int, epochs: int, batches: int,
            repeats: int) -> list[Row]:
    from data.loader import FaceData
    from data.prepare import synthesize

    config = train_config(width=width, latent_dim=latent_dim, batch_size=batch_size, epochs=epochs, batches=batches)
    with tempfile.TemporaryDirectory(prefix="maskvae-bench-trainer-") as scratch:
        root = Path(scratch)
        synthesize(root / "faces", count=count, size=size, seed=0, progress=False)
        data = FaceData.load(root / "faces", splits=("train", "val"))
        if data.size("train") < batches * batch_size:
            raise ValueError(f"count: {count} faces leave {data.size('train')} for training, fewer than "
                             f"{batches} batches of {batch_size}")
        losses: dict[str, float] = {}

        def run(side: str):
            def once() -> float:
                rate, loss = plain_loop(config, data) if side == "plain" else framework(config, data, root / "work")
                losses[side] = loss
                return rate
            return once

        runs = {"plain": run("plain"), "train": run("train")}
        interleaved(runs, 1)  # warm-up: first-call kernel setup and allocator growth, for both
        samples = interleaved(runs, repeats)
    ours, baseline = median(samples["train"]), median(samples["plain"])
    same_work = math.isclose(losses["plain"], losses["train"], rel_tol=1e-4)
    details = {"image_size": size, "width": width, "latent_dim": latent_dim, "batch_size": batch_size, "epochs": epochs,
               "batches_per_epoch": batches, "threads": torch.get_num_threads(), "samples": samples,
               "last_epoch_loss": losses, "same_losses": same_work}
    note = "" if same_work else "the two loops computed different losses: not the same work"
    return [Row(NAME, f"train() vs plain loop, CPU, {size} px, batch {batch_size}, width {width:g}", "images/s",
                ours, baseline, "hand-written PyTorch loop", TARGET, ratio(ours, baseline), note=note, details=details)]


def run(quick: bool) -> list[Row]:
    if quick:
        return measure(size=48, count=400, width=0.25, latent_dim=64, batch_size=32, epochs=1, batches=8, repeats=2)
    return measure(size=48, count=1000, width=0.5, latent_dim=128, batch_size=32, epochs=2, batches=12, repeats=3)
