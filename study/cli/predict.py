"""`maskvae predict`: reconstruct faces with a logged or exported model."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    predict = subparsers.add_parser("predict", help="reconstruct faces with a logged model and write its masks")
    predict.add_argument("--model", required=True,
                         help="exported model directory, runs:/ID/model, or models:/NAME@champion")
    predict.add_argument("images", nargs="+", type=Path, help="face images (any size; resized to the model's)")
    predict.add_argument("--out", required=True, type=Path, help="output directory")
    predict.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's default)")
    predict.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from study.driver.predict import predict

    written = predict(args.model, args.images, args.out, tracking_uri=args.tracking_uri)
    print(f"wrote {len(written)} files to {args.out}")
    return 0
