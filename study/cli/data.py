"""`maskvae data ...`: synthesise faces, prepare a real source, verify a prepared dataset."""
from __future__ import annotations

import argparse
from pathlib import Path

from study.cli.args import positive_int, resolution


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="make, prepare and check datasets")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    synth = commands.add_parser("synth", help="render synthetic faces with exact masks into the prepared format")
    # Outputs stay strings: Path() would fold an s3:// URI into a local folder named "s3:".
    synth.add_argument("out", help="output directory or object-store URI (must not exist unless --overwrite)")
    synth.add_argument("--count", type=positive_int, default=2000, help="number of faces (default 2000)")
    synth.add_argument("--size", type=resolution, default=32, help="image side in pixels (default 32)")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset atomically")
    synth.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    synth.set_defaults(handler=_synth)

    prepare = commands.add_parser("prepare", help="convert CelebA (+face-parsing labels) or CelebAMask-HQ to shards")
    prepare.add_argument("out", help="output directory or object-store URI (must not exist unless --overwrite)")
    prepare.add_argument("--source", required=True, choices=_source_names(), help="layout of the input folders")
    prepare.add_argument("--images", required=True, type=Path, help="folder of face images")
    prepare.add_argument("--masks", required=True, type=Path, help="folder of label PNGs (celeba) or part masks (celebamask-hq)")
    prepare.add_argument("--partition", type=Path, help="list_eval_partition.txt (0 train, 1 val, 2 test)")
    prepare.add_argument("--size", type=resolution, default=144, help="image side in pixels (default 144, the paper's)")
    prepare.add_argument("--face-classes", type=_class_list, help="comma-separated face-parsing class ids counted as face "
                         "(default: all but background, ears, earring, neck, necklace, cloth)")
    prepare.add_argument("--resize", choices=("squash", "center_crop"),
                         help="squash: the whole frame resized to a square, bilinear (the paper's); center_crop: centre "
                         "square, bicubic (default: the source's, squash for celeba, center_crop for celebamask-hq)")
    prepare.add_argument("--skip-bad", action="store_true", help="skip bad files (counted in the manifest) instead of stopping")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing dataset atomically")
    prepare.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    prepare.set_defaults(handler=_prepare)

    verify = commands.add_parser("verify", help="check a prepared dataset's shards against its manifest hashes")
    verify.add_argument("path", help="prepared dataset directory or URI")
    verify.set_defaults(handler=_verify)


def _source_names() -> list[str]:
    from data.sources import SOURCES

    return sorted(SOURCES)


def _class_list(text: str) -> tuple[int, ...]:
    try:
        classes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--face-classes: expected comma-separated integers, got {text!r}") from None
    if not classes or any(not 0 <= c <= 18 for c in classes):
        raise argparse.ArgumentTypeError(f"--face-classes: ids must be in 0..18, got {text!r}")
    return classes


def _synth(args: argparse.Namespace) -> int:
    from data.prepare import synthesize

    manifest = synthesize(args.out, count=args.count, size=args.size, seed=args.seed,
                          progress=args.progress, overwrite=args.overwrite)
    print(f"wrote {sum(manifest.counts.values())} synthetic {args.size}px faces to {args.out} "
          f"(train {manifest.counts['train']}, val {manifest.counts['val']}, test {manifest.counts['test']})")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from data.labels import DEFAULT_FACE_CLASSES
    from data.prepare import prepare

    manifest = prepare(args.out, source=args.source, images=args.images, masks=args.masks, partition=args.partition,
                       size=args.size, face_classes=args.face_classes or DEFAULT_FACE_CLASSES,
                       skip_bad=args.skip_bad, progress=args.progress, overwrite=args.overwrite, resize=args.resize)
    print(f"prepared {sum(manifest.counts.values())} faces at {args.size}px into {args.out} "
          f"({', '.join(f'{k} {v}' for k, v in manifest.counts.items())}; skipped {manifest.skipped})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from data.shard_reader import verify

    manifest = verify(args.path)
    print(f"{args.path}: {len(manifest.shards)} shards match the manifest (content hash {manifest.content_hash[:12]})")
    return 0
