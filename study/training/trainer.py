"""`train(config, data, report)`: one hypothesis, one set of hyperparameters, no Ray anywhere.

The CLI's `maskvae train`, the tests and the Ray trainable all call this function. It validates
every epoch, writes a checkpoint every epoch and hands both to `report`.
"""
from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from data.loader import FaceData
from models.losses import LossWeights, loss_terms
from models.metrics import cheap_metrics
from models.vae import FaceVAE, FaceVAEConfig, VAEOutput, compose

from study.training import faults
from study.training.checkpoint import load_checkpoint, prune_checkpoints, restore_rng_state, save_checkpoint
from study.config.train import TrainConfig
from study.training.device import DevicePlan, plan_device
from study.training.images import reconstruction_rows, save_grid

Reporter = Callable[[dict[str, float], Path], None]
TERM_NAMES = ("total", "reconstruction", "kl", "mask")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf: the trial stops, and this is the reason it gives."""


class IncompatibleCheckpointError(ValueError):
    user_error = True  # bad input: the CLI prints it as one line and exits 2 (study.errors.is_user_error)


def check_compatible(saved: TrainConfig, config: TrainConfig, where: str) -> None:
    """A checkpoint resumes only the hypothesis and network it was trained for; `where` names it."""
    if saved.parsed_hypothesis != config.parsed_hypothesis or saved.model != config.model:
        raise IncompatibleCheckpointError(
            f"{where}: checkpoint is for hypothesis {saved.hypothesis} with model {saved.model.model_dump()}, "
            f"not {config.hypothesis} with {config.model.model_dump()}"
        )


def build_model(config: TrainConfig, image_size: int) -> FaceVAE:
    model = FaceVAE(FaceVAEConfig(
        image_size=image_size,
        width=config.model.width,
        latent_dim=config.model.latent_dim,
        use_mask=config.parsed_hypothesis.mask,
    ))
    # How fast BatchNorm's statistics follow the batches is a training setting, not part of the
    # network's shape: torch's momentum is the weight of the new batch, 1 - Keras's decay.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0 - config.batch_norm_decay
    return model


def loss_weights(config: TrainConfig) -> LossWeights:
    return LossWeights(**config.loss_weights.model_dump())


def objective_value(terms: dict[str, float], reference_kl_weight: float, mask_weight: float) -> float:
    """The hypothesis's own loss at a fixed KL weight: the rate-distortion trade-off being tuned for.

    Scoring trials on reconstruction alone would reward the smallest KL weight; scoring at the
    training weight would make trials with different weights incomparable.
    """
    return terms["reconstruction"] + reference_kl_weight * terms["kl"] + mask_weight * terms["mask"]


def _raise_if_not_finite(terms: dict[str, float], where: str) -> None:
    bad = {name: value for name, value in terms.items() if not math.isfinite(value)}
    if bad:
        described = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise NonFiniteLossError(f"loss became non-finite {where} ({described}); stopping this run")


def on_training_device(data: FaceData, plan: DevicePlan) -> FaceData:
    """The data on the training device: copied there once per process (the FaceData keeps the copy
    for the next trial). Where it does not fit it stays on the host and each batch crosses as uint8."""
    try:
        return data.to(plan.device)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        warnings.warn(f"the dataset does not fit on {plan.device}: batches are copied there one by one", stacklevel=2)
        return data


def _run_epoch_training(model, optimizer, data: FaceData, config: TrainConfig, plan: DevicePlan,
                        epoch: int, weights: LossWeights, forward) -> tuple[dict[str, float], int]:
    """One epoch of steps; ``forward`` is the module the steps call (a compiled ``model``, or ``model``)."""
    model.train()
    loss_name = config.parsed_hypothesis.loss
    use_mask = config.parsed_hypothesis.mask
    sums = torch.zeros(len(TERM_NAMES), device=plan.device)
    seen = 0
    batches = data.batches("train", config.batch_size, shuffle=True, seed=config.seed, epoch=epoch,
                           drop_last=data.size("train") >= config.batch_size, limit=config.max_train_batches,
                           device=plan.device, channels_last=plan.channels_last)
    if config.progress:
        from tqdm.auto import tqdm

        total = data.num_batches("train", config.batch_size)
        if config.max_train_batches:
            total = min(total, config.max_train_batches)
        batches = tqdm(batches, total=total, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
    poison = faults.fire("epoch_start", epoch=epoch + 1) == "nan"
    for images, masks in batches:
        images = plan.prepare_input(images)
        with plan.autocast():
            out = forward(images, masks if use_mask else None)
            terms = loss_terms(out, images, masks, loss_name, config.kl_weight, weights)
        if poison:
            terms["total"] = terms["total"] * float("nan")
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        if config.grad_clip_norm is not None:
            clip_gradients(model.parameters(), config.grad_clip_norm, config.grad_clip_scope)
        optimizer.step()
        # Accumulate on the device: one host sync per epoch, not per step.
        sums += torch.stack([terms[name].detach().float() for name in TERM_NAMES]) * images.shape[0]
        seen += images.shape[0]
    means = (sums / max(seen, 1)).tolist()
    return dict(zip(TERM_NAMES, means)), seen


def clip_gradients(parameters, max_norm: float, scope: str) -> None:
    """"global": one norm over every gradient (torch's clip_grad_norm_). "per_parameter": each
    parameter's gradient on its own, g * max_norm / max(|g|, max_norm), as Keras's Adam(clipnorm=...)
    does in the paper's code."""
    with_grads = [p for p in parameters if p.grad is not None]
    if not with_grads:
        return
    if scope == "global":
        torch.nn.utils.clip_grad_norm_(with_grads, max_norm)
        return
    grads = [p.grad for p in with_grads]
    norms = torch._foreach_norm(grads)
    factors = [max_norm / torch.clamp(norm, min=max_norm) for norm in norms]
    torch._foreach_mul_(grads, factors)


def _predicted_output(out: VAEOutput, images: torch.Tensor) -> torch.Tensor:
    """`model.predict(images).output` from a pass already made with z = mean: the same decoder outputs,
    composed with the predicted mask instead of the ground truth (halves validation's forward passes)."""
    if out.mask_pred is None:
        return out.output
    return compose(out.recon, out.mask_pred, images)


@torch.no_grad()
def validate(model: FaceVAE, data: FaceData, config: TrainConfig, plan: DevicePlan, split: str = "val") -> dict[str, float]:
    """Objective terms (ground-truth mask, z = mean) and cheap metrics on the predicted-mask output."""
    model.eval()
    loss_name = config.parsed_hypothesis.loss
    use_mask = config.parsed_hypothesis.mask
    weights = loss_weights(config)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for images, masks in data.batches(split, config.batch_size, limit=config.max_val_batches, device=plan.device,
                                      channels_last=plan.channels_last):
        images = plan.prepare_input(images)
        with plan.autocast():
            out = model(images, masks if use_mask else None, sample=False)
            terms = loss_terms(out, images, masks, loss_name, config.kl_weight, weights)
            predicted = _predicted_output(out, images)
        batch = {name: terms[name].double() * images.shape[0] for name in TERM_NAMES}
        for name, per_image in cheap_metrics(predicted.float(), images.float()).items():
            batch[name] = per_image.double().sum()
        # Sums stay on the device: one host sync per validation, not one per batch and metric.
        for name, value in batch.items():
            sums[name] = sums[name] + value if name in sums else value
        count += images.shape[0]
    if count == 0:
        raise ValueError(f"split '{split}' of the dataset is empty: cannot validate")
    totals = torch.stack(list(sums.values())).tolist()
    return {name: value / count for name, value in zip(sums, totals)}


def _restore(checkpoint: Path, config: TrainConfig, model, optimizer) -> tuple[int, dict | None]:
    payload = load_checkpoint(checkpoint)
    check_compatible(TrainConfig.from_json(payload["config"]), config, str(checkpoint))
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise IncompatibleCheckpointError(f"{checkpoint}: weights do not fit this model ({error})") from None
    restore_rng_state(payload["rng"])
    return int(payload["epoch"]), payload.get("best")


def train(config: TrainConfig, data: FaceData, report: Reporter | None = None, *,
          checkpoint: Path | None = None, workdir: Path | None = None) -> dict[str, float]:
    """Train one run; returns the last epoch's metrics.

    `checkpoint` resumes from a checkpoint directory written by an earlier call. Checkpoints go to
    `workdir/checkpoints/epoch-NNNNN` (a temporary directory when `workdir` is None; the newest
    `keep_checkpoints` are kept).
    """
    plan = plan_device(config.device, config.fast_path)
    if plan.device.type == "cuda":
        # Input sizes are fixed for a whole run: cuDNN may time its kernels once and keep the fastest.
        torch.backends.cudnn.benchmark = True
    data = on_training_device(data, plan)
    torch.manual_seed(config.seed)
    model = build_model(config, data.manifest.image_size).to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Only the training steps run compiled; checkpoints and validation use the module itself.
    forward = torch.compile(model) if config.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    start_epoch, best = _restore(Path(checkpoint), config, model, optimizer) if checkpoint else (0, None)
    weights = loss_weights(config)

    scratch = tempfile.TemporaryDirectory(prefix="maskvae-train-") if workdir is None else None
    root = Path(scratch.name if scratch else workdir) / "checkpoints"
    metrics: dict[str, float] = {}
    try:
        if start_epoch >= config.epochs:
            metrics = _epoch_metrics(config, start_epoch, {}, validate(model, data, config, plan), 0, 0.0)
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            train_terms, images_seen = _run_epoch_training(model, optimizer, data, config, plan, epoch, weights,
                                                           forward)
            _raise_if_not_finite(train_terms, f"in training epoch {epoch + 1}")
            elapsed = time.perf_counter() - started
            val_terms = validate(model, data, config, plan)
            _raise_if_not_finite({k: val_terms[k] for k in TERM_NAMES}, f"in validation after epoch {epoch + 1}")
            metrics = _epoch_metrics(config, epoch + 1, train_terms, val_terms, images_seen, elapsed)
            metrics["start_epoch"] = float(start_epoch)
            # The authors keep the epoch with the lowest validation loss (ModelCheckpoint on val_loss);
            # the loss is finite here, and ties keep the earlier epoch as Keras does.
            if best is None or val_terms["total"] < best["value"]:
                best = {"epoch": epoch + 1, "value": float(val_terms["total"]),
                        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            metrics["best_epoch"] = float(best["epoch"])
            directory = save_checkpoint(root / f"epoch-{epoch + 1:05d}", model=model, optimizer=optimizer,
                                        epoch=epoch + 1, config_json=config.to_json(), metrics=metrics, best=best)
            if config.sample_faces:
                _save_samples(model, data, config, plan, directory / "samples.png", epoch + 1)
            prune_checkpoints(root, config.keep_checkpoints)
            if report is not None:
                report(metrics, directory)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return metrics


def _save_samples(model: FaceVAE, data: FaceData, config: TrainConfig, plan: DevicePlan, path: Path, epoch: int) -> None:
    count = min(config.sample_faces, data.size("val"))
    images, _ = data.tensors("val", list(range(count)), device=plan.device, channels_last=plan.channels_last)
    with plan.autocast():
        rows = reconstruction_rows(model, plan.prepare_input(images))
    save_grid(rows, path, title=f"{config.hypothesis} epoch {epoch}")


def _epoch_metrics(config: TrainConfig, epoch: int, train_terms: dict[str, float], val_terms: dict[str, float],
                   images_seen: int, elapsed: float) -> dict[str, float]:
    metrics: dict[str, float] = {"epoch": float(epoch)}
    metrics.update({f"train_{name}": value for name, value in train_terms.items()})
    metrics.update({f"val_{name}": value for name, value in val_terms.items()})
    metrics["val_objective"] = objective_value(val_terms, config.reference_kl_weight, config.loss_weights.mask)
    if elapsed > 0:
        metrics["images_per_s"] = images_seen / elapsed
        metrics["epoch_seconds"] = elapsed
    return metrics
