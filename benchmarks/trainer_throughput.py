"""Trainer throughput on CPU: `study.training.trainer.train()` against a plain hand-written PyTorch loop.

Same FaceVAE, same seed, same batches in the same order (the loader's per-epoch permutation), same
loss function and optimiser steps: the two runs compute the same losses (checked), so the ratio is
what the framework costs. The claim is on the training steps (train()'s own per-epoch clock, the
figure it reports as images_per_s, against the plain loop's clock around the same steps); a
second row times both calls end to end, where train() also validates one batch, checkpoints and
draws a sample grid every epoch. The plain loop trains from float tensors held in memory, the
leanest loop one could write. One thread, as Ray gives a CPU trial with
`cpus_per_trial: 1`; wall time (checkpoints wait on the disk); the ratio is the median of
per-round ratios of interleaved runs.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .common import Row, Stopwatch, Target, interleaved, median, paired_ratio, torch_threads

NAME = "trainer"
TARGET = Target(">=", 0.95)
HYPOTHESIS = "ssim+l2/mask"


def train_config(*, width: float, latent_dim: int, batch_size: int, epochs: int, batches: int, device: str = "cpu",
                 fast_path: bool = True, compile: bool = False, seed: int = 0, sample_faces: int = 8):
    """The run both sides train: `batches` steps per epoch, one validation batch per epoch."""
    from study.config.train import TrainConfig

    return TrainConfig(hypothesis=HYPOTHESIS, epochs=epochs, batch_size=batch_size, lr=1e-4, kl_weight=1e-3,
                       model={"width": width, "latent_dim": latent_dim}, device=device, fast_path=fast_path,
                       compile=compile, max_train_batches=batches, max_val_batches=1, seed=seed,
                       sample_faces=sample_faces)


@dataclass
class Timing:
    steps: float  # images/s over the training steps (each side's own clock around its epochs' steps)
    wall: float  # images/s of the whole call (model build and, for train(), per-epoch validation etc.)
    loss: float  # last epoch's mean training loss


def plain_loop(config, data) -> Timing:
    """A hand-written loop doing train()'s steps, from float tensors held in memory."""
    from data.loader import epoch_seed
    from models.losses import LossWeights, loss_terms
    from models.vae import FaceVAE, FaceVAEConfig

    from study.training.device import plan_device

    # The memory layout train() would pick on this device, so both loops run the same kernels.
    layout = plan_device(config.device, config.fast_path).channels_last
    # Float, in memory, before the clock starts.
    images, masks = data.tensors("train", range(data.size("train")), channels_last=layout)
    wall = Stopwatch()
    torch.manual_seed(config.seed)
    model = FaceVAE(FaceVAEConfig(image_size=data.image_size, width=config.model.width,
                                  latent_dim=config.model.latent_dim, use_mask=True))
    if layout:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    weights = LossWeights(**config.loss_weights.model_dump())
    model.train()
    seen, loss_mean, stepping = 0, 0.0, 0.0
    for epoch in range(config.epochs):
        steps = Stopwatch()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)))
        total = torch.zeros(())
        for b in range(config.max_train_batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            x, m = images[idx], masks[idx]
            if layout:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x, m)
            loss = loss_terms(out, x, m, config.parsed_hypothesis.loss, config.kl_weight, weights)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # Keras clipnorm, each parameter's gradient on its own (train()'s default scope).
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norms = torch._foreach_norm(grads)
            torch._foreach_mul_(grads, [config.grad_clip_norm / n.clamp(min=config.grad_clip_norm) for n in norms])
            optimizer.step()
            total += loss.detach() * len(idx)
            seen += len(idx)
        loss_mean = float(total) / (config.max_train_batches * config.batch_size)
        stepping += steps.lap()
    return Timing(seen / stepping, seen / wall.lap(), loss_mean)


def framework(config, data, workdir: Path) -> Timing:
    """train(), with the step throughput it reports per epoch and its end-to-end wall time."""
    from study.training.trainer import train

    history: list[dict[str, float]] = []
    wall = Stopwatch()
    metrics = train(config, data, lambda m, _: history.append(m), workdir=workdir)
    elapsed = wall.lap()
    images = config.epochs * config.max_train_batches * config.batch_size
    return Timing(images / sum(h["epoch_seconds"] for h in history), images / elapsed, metrics["train_total"])


def measure(*, size: int, count: int, width: float, latent_dim: int, batch_size: int, epochs: int, batches: int,
            repeats: int, threads: int = 1) -> list[Row]:
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
        timings: dict[str, list[Timing]] = {"plain": [], "train": []}

        def run(side: str):
            def once() -> float:
                timing = plain_loop(config, data) if side == "plain" else framework(config, data, root / "work")
                timings[side].append(timing)
                return timing.steps
            return once

        runs = {"plain": run("plain"), "train": run("train")}
        with torch_threads(threads):
            interleaved(runs, 1)  # warm-up: first-call kernel setup and allocator growth, for both
            for kept in timings.values():
                kept.clear()
            interleaved(runs, repeats)
    losses = {side: timings[side][-1].loss for side in timings}
    same_work = math.isclose(losses["plain"], losses["train"], rel_tol=1e-4)
    samples = {f"{side}_{kind}": [getattr(t, kind) for t in timings[side]]
               for side in timings for kind in ("steps", "wall")}
    details = {"image_size": size, "width": width, "latent_dim": latent_dim, "batch_size": batch_size, "epochs": epochs,
               "batches_per_epoch": batches, "threads": threads, "samples": samples,
               "last_epoch_loss": losses, "same_losses": same_work}
    note = "" if same_work else "the two loops computed different losses: not the same work"
    where = f"CPU, {threads} thread{'s' if threads > 1 else ''}, {size} px, batch {batch_size}, width {width:g}"
    return [
        Row(NAME, f"train() vs plain loop, training steps ({where})", "images/s", median(samples["train_steps"]),
            median(samples["plain_steps"]), "hand-written PyTorch loop", TARGET,
            paired_ratio(samples["train_steps"], samples["plain_steps"]), note=note, details=details),
        Row(NAME, f"train() vs plain loop, end to end: + per epoch 1 validation batch, checkpoint, sample grid "
                  f"({batches} steps/epoch)", "images/s", median(samples["train_wall"]), median(samples["plain_wall"]),
            "hand-written PyTorch loop", None, paired_ratio(samples["train_wall"], samples["plain_wall"]),
            note="per-epoch work, shrinks with longer epochs"),
    ]


def run(quick: bool) -> list[Row]:
    if quick:
        return measure(size=48, count=400, width=0.25, latent_dim=64, batch_size=32, epochs=1, batches=8, repeats=2)
    return measure(size=48, count=800, width=0.25, latent_dim=64, batch_size=32, epochs=2, batches=16, repeats=5)
