"""`maskvae train`: one hypothesis, one run, straight through `train()` (no Ray)."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from study.cli import run_dir
from study.cli.args import positive_float, positive_int

# flag -> the TrainConfig field it sets (its help and default come from that field).
_FLAG_TO_FIELD = {
    "hypothesis": ("hypothesis",), "epochs": ("epochs",), "batch_size": ("batch_size",), "lr": ("lr",),
    "kl_weight": ("kl_weight",), "seed": ("seed",), "device": ("device",), "progress": ("progress",),
    "width": ("model", "width"), "latent_dim": ("model", "latent_dim"),
}


def _field_help(path: tuple[str, ...]) -> str:
    """The config field's own description and default, so `train --help` and the schema never disagree."""
    from study.config.train import TrainConfig

    model = TrainConfig
    for name in path[:-1]:
        model = model.model_fields[name].annotation
    field = model.model_fields[path[-1]]
    return f"{field.description} (default: {field.default})".replace("%", "%%")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train one hypothesis on a prepared dataset (no Ray)",
        description="Train one hypothesis into a run directory: checkpoints/ (every epoch, newest two kept), "
                    "metrics.jsonl (one line per epoch), train_config.json and model/ (the best validation epoch's "
                    "weights, for `maskvae predict --model DIR/model`). A directory that already holds a run is "
                    "refused unless --resume or --overwrite says what to do with it.")
    parser.add_argument("--data", required=True, help="prepared dataset directory or URI (maskvae data synth/prepare)")
    parser.add_argument("--hypothesis", required=True, help="reconstruction loss and mask use, e.g. ssim+l2/mask, l1/nomask")
    parser.add_argument("--epochs", type=positive_int, required=True, help="train until this epoch (a resumed run "
                        "counts the epochs it already has)")
    parser.add_argument("--out", required=True, type=Path, help="run directory: checkpoints/, metrics.jsonl, model/ "
                        "(must not hold a run unless --resume or --overwrite)")
    parser.add_argument("--width", type=positive_float, help=_field_help(("model", "width")))
    parser.add_argument("--latent-dim", type=positive_int, help=_field_help(("model", "latent_dim")))
    parser.add_argument("--batch-size", type=positive_int, help=_field_help(("batch_size",)))
    parser.add_argument("--lr", type=positive_float, help=_field_help(("lr",)))
    parser.add_argument("--kl-weight", type=float, help=_field_help(("kl_weight",)))
    parser.add_argument("--seed", type=int, help=_field_help(("seed",)))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help=_field_help(("device",)))
    parser.add_argument("--resume", nargs="?", const=True, type=Path, metavar="CKPT",
                        help="continue a run: without a value the --out run's newest readable checkpoint, or a "
                        "checkpoint directory, or another run directory (its newest readable checkpoint); the --out "
                        "run's checkpoints and metrics after that epoch are dropped (default: start a new run)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out with a new one; the old run stays untouched until the new one "
                        "has finished, then is removed whole (default: refuse a used --out)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the per-epoch progress bar (default: shown)")
    parser.set_defaults(handler=_train)


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
    candidates = checkpoint_dirs(path / run_dir.CHECKPOINTS)
    if not candidates:
        raise CheckpointError(f"--resume {path}: no checkpoint found (expected a checkpoint directory or a run directory)")
    payload, skipped = latest_loadable_checkpoint(path / run_dir.CHECKPOINTS)
    for reason in skipped:
        print(f"skipping unreadable checkpoint: {reason}")
    if payload is None:
        raise CheckpointError(f"--resume {path}: none of its checkpoints can be read")
    return path / run_dir.CHECKPOINTS / f"epoch-{payload['epoch']:05d}"


def _check_resumable(checkpoint: Path, config) -> int:
    """The checkpoint's epoch, after checking it fits this run's hypothesis and network (before anything is written)."""
    from study.config.train import TrainConfig
    from study.training.checkpoint import load_checkpoint
    from study.training.trainer import check_compatible

    payload = load_checkpoint(checkpoint)
    check_compatible(TrainConfig.from_json(payload["config"]), config, f"--resume {checkpoint}")
    return int(payload["epoch"])


def _train(args: argparse.Namespace) -> int:
    from data.loader import FaceData

    from study.config.base import validated
    from study.config.train import TrainConfig

    config = validated(TrainConfig, config_values(args), source="training arguments")
    out: Path = args.out
    resume_arg = out if args.resume is True else args.resume
    resume = _resolve_resume(resume_arg) if resume_arg is not None else None
    run_dir.check_out(out, resume=resume, overwrite=args.overwrite)
    resume_epoch = _check_resumable(resume, config) if resume is not None else 0
    data = FaceData.load(args.data, splits=("train", "val"))
    # Everything above only reads; from here on the run directory is written.
    if args.overwrite and run_dir.run_entries(out):
        staged = run_dir.staging_dir(out)
        try:
            newest = _train_into(staged, config, data, args.data, resume, show=out)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            print(f"{out}: left unchanged (the replacement run did not finish)")
            raise
        run_dir.replace_run(out, staged)
        newest = out / newest.relative_to(staged)
    else:
        if resume is not None and run_dir.inside(resume, out):
            for dropped in run_dir.trim_after(out, resume_epoch):
                print(f"dropped {dropped} (after the resumed epoch {resume_epoch})")
        newest = _train_into(out, config, data, args.data, resume, show=out)
    print(f"model written to {out / run_dir.MODEL}; continue with --resume {newest}")
    return 0


def _train_into(out: Path, config, data, data_arg: str, resume: Path | None, *, show: Path) -> Path:
    """Train and export into `out`; returns the newest checkpoint. `show` is the directory named in messages."""
    from study.training.checkpoint import best_weights, export_model, load_checkpoint, model_metadata
    from study.training.trainer import build_model, train

    out.mkdir(parents=True, exist_ok=True)
    (out / run_dir.CONFIG).write_text(config.model_dump_json(indent=2))
    print(f"training {config.hypothesis} on {data_arg} ({data.size('train')} train / {data.size('val')} val, "
          f"{data.manifest.image_size}px) for {config.epochs} epochs into {show}")
    reported: list[Path] = []

    with (out / run_dir.METRICS).open("a") as log:
        def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            reported.append(Path(checkpoint_dir))
            print(f"epoch {int(metrics['epoch'])}: train {metrics['train_total']:.4f}  val objective "
                  f"{metrics['val_objective']:.4f}  1-SSIM {metrics['val_one_minus_ssim']:.4f}  "
                  f"{metrics.get('images_per_s', 0):.0f} img/s")

        train(config, data, report, checkpoint=resume, workdir=out)
    # The run's own last checkpoint (or the resumed one when no epoch was left to train).
    newest = reported[-1] if reported else Path(resume)
    weights, best_epoch = best_weights(load_checkpoint(newest))
    model = build_model(config, data.manifest.image_size)
    model.load_state_dict(weights)
    export_model(out / run_dir.MODEL, model, model_metadata(config, data.manifest, best_epoch))
    print(f"best validation epoch {best_epoch} exported")
    return newest
