"""`maskvae train`: one hypothesis, one run, straight through `train()` (no Ray)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.cli.args import positive_float, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train one hypothesis on a prepared dataset (no Ray)")
    parser.add_argument("--data", required=True, help="prepared dataset directory (maskvae data synth/prepare)")
    parser.add_argument("--hypothesis", required=True, help="e.g. ssim+l2/mask, l1/nomask")
    parser.add_argument("--epochs", type=positive_int, required=True)
    parser.add_argument("--out", required=True, type=Path, help="run directory: checkpoints, metrics.jsonl, model/")
    parser.add_argument("--width", type=positive_float, help="filter-count multiplier (1.0 = the paper's network)")
    parser.add_argument("--latent-dim", type=positive_int)
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--lr", type=positive_float)
    parser.add_argument("--kl-weight", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--resume", type=Path, metavar="CKPT",
                        help="checkpoint directory, or a run directory (its newest readable checkpoint)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(handler=_train)


_FLAG_TO_FIELD = {
    "hypothesis": ("hypothesis",), "epochs": ("epochs",), "batch_size": ("batch_size",), "lr": ("lr",),
    "kl_weight": ("kl_weight",), "seed": ("seed",), "device": ("device",), "progress": ("progress",),
    "width": ("model", "width"), "latent_dim": ("model", "latent_dim"),
}


def config_values(args: argparse.Namespace) -> dict:
    values: dict = {}
    for flag, path in _FLAG_TO_FIELD.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        target = values
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return values


def _resolve_resume(path: Path) -> Path:
    from study.training.checkpoint import CHECKPOINT_FILE, CheckpointError, checkpoint_dirs, latest_loadable_checkpoint

    if (path / CHECKPOINT_FILE).is_file() or path.is_file():
        return path
    candidates = checkpoint_dirs(path / "checkpoints")
    if not candidates:
        raise CheckpointError(f"{path}: no checkpoint found (expected a checkpoint directory or a run directory)")
    payload, skipped = latest_loadable_checkpoint(path / "checkpoints")
    for reason in skipped:
        print(f"skipping unreadable checkpoint: {reason}")
    if payload is None:
        raise CheckpointError(f"{path}: none of its checkpoints can be read")
    return path / "checkpoints" / f"epoch-{payload['epoch']:05d}"


def _train(args: argparse.Namespace) -> int:
    from data.loader import FaceData

    from study.training.checkpoint import best_weights, export_model, load_checkpoint
    from study.config.train import TrainConfig
    from study.config.base import validated
    from study.training.trainer import build_model, train

    config = validated(TrainConfig, config_values(args), source="training arguments")
    resume = _resolve_resume(args.resume) if args.resume else None
    data = FaceData.load(args.data, splits=("train", "val"))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(config.model_dump_json(indent=2))
    print(f"training {config.hypothesis} on {args.data} ({data.size('train')} train / {data.size('val')} val, "
          f"{data.manifest.image_size}px) for {config.epochs} epochs")

    log = (out / "metrics.jsonl").open("a")

    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        log.write(json.dumps(metrics) + "\n")
        log.flush()
        print(f"epoch {int(metrics['epoch'])}: train {metrics['train_total']:.4f}  val objective "
              f"{metrics['val_objective']:.4f}  1-SSIM {metrics['val_one_minus_ssim']:.4f}  "
              f"{metrics.get('images_per_s', 0):.0f} img/s  -> {checkpoint_dir}")

    with log:
        train(config, data, report, checkpoint=resume, workdir=out)
    final = out / "checkpoints"
    from study.training.checkpoint import checkpoint_dirs

    newest = checkpoint_dirs(final)[-1]
    weights, best_epoch = best_weights(load_checkpoint(newest))
    model = build_model(config, data.manifest.image_size)
    model.load_state_dict(weights)
    export_model(out / "model", model, {"train_config": config.model_dump(), "dataset": data.manifest.content_hash,
                                        "best_epoch": best_epoch})
    print(f"model (best validation epoch {best_epoch}) written to {out / 'model'}; resume with --resume {newest}")
    return 0
