"""`maskvae predict`: reconstruct faces with a logged or exported model."""
from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Reconstruct face images with a trained model and write, per input IMAGE.ext, OUT/IMAGE_reconstruction.png
and (mask models) OUT/IMAGE_mask.png. Outputs are square PNGs at the model's resolution (32 px for the smoke
study, 144 px for the paper's). Inputs of any size are resized to it as the model's training data was:
squash (the whole frame, aspect ratio not kept, bilinear; the paper's CelebA preparation) or center_crop
(the centred square, then bicubic); a model that did not record its data's mode uses center_crop. A mask
model's reconstruction is its decoded face pasted over the resized input through its predicted mask.
Runs from any directory: a models:/ or runs:/ URI is looked up in --tracking-uri, else the --study's
tracking store, else $MLFLOW_TRACKING_URI, else MLflow's default (./mlflow.db).
"""


def register(subparsers) -> None:
    predict = subparsers.add_parser("predict", help="reconstruct faces with a trained model and write its masks",
                                    description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("images", nargs="+", type=Path, help="face images (any size and format PIL reads)")
    predict.add_argument("--out", required=True, type=Path, help="output directory (created; same-named files in it "
                         "are replaced)")
    predict.add_argument("--model", help="exported model directory (a `maskvae train` run or its model/), "
                         "runs:/RUN_ID/model, or models:/NAME@ALIAS (default with --study: models:/<study name>@champion)")
    predict.add_argument("--study", type=Path, metavar="DIR",
                         help="a finished study directory: its tracking store, and its champion unless --model is given")
    predict.add_argument("--tracking-uri", help="MLflow tracking URI (default: the --study's, else $MLFLOW_TRACKING_URI, "
                         "else MLflow's default sqlite:///mlflow.db in the current directory)")
    predict.add_argument("--resize", choices=("squash", "center_crop"),
                         help="how inputs are brought to the model's resolution (default: as the model's dataset "
                         "was prepared, else center_crop)")
    predict.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from study.driver.predict import predict

    written = predict(args.model, args.images, args.out, tracking_uri=args.tracking_uri, study_dir=args.study,
                      resize=args.resize)
    print(f"wrote {len(written)} files for {len(args.images)} images to {args.out}")
    return 0
