"""Test-split evaluation: the paper's six metrics per image, in two views (composed, decoder) and two regions."""
from __future__ import annotations

import pandas as pd
import torch

from data.loader import FaceData
from models.metrics import METRIC_NAMES, MetricSuite
from models.vae import FaceVAE

from study.config.views import COMPOSED, DECODER, FACE, FULL, SCORED_PAIRS

# (view, region) pairs every final run is scored on (study.config.views says what each view is).
VIEWS = SCORED_PAIRS
# On CPU, batches whose intermediate maps stay in cache: batching gains ~10x at 32 px (128 images),
# while 64 images at 144 px ran slower than one at a time (benchmarks/evaluation.py).
CPU_PIXELS_PER_BATCH = 128 * 32 * 32
ACCELERATOR_BATCH = 128


def evaluation_batch_size(image_size: int, device: torch.device | str) -> int:
    """Test images per metric-suite call: cache-sized on CPU, large on an accelerator."""
    if torch.device(device).type != "cpu":
        return ACCELERATOR_BATCH
    return max(1, CPU_PIXELS_PER_BATCH // (image_size * image_size))


@torch.no_grad()
def evaluate(model: FaceVAE, data: FaceData, suite: MetricSuite, split: str = "test", batch_size: int | None = None,
             device: torch.device | str = "cpu") -> pd.DataFrame:
    """One row per (image, view, region), for the `VIEWS`. `batch_size` defaults to `evaluation_batch_size`."""
    model.eval()
    batch_size = batch_size or evaluation_batch_size(data.image_size, device)
    ids = data.ids(split)
    frames, offset = [], 0
    for images, masks in data.batches(split, batch_size, device=device):
        out = model.predict(images)
        batch_ids = ids[offset:offset + images.shape[0]]
        offset += images.shape[0]
        face = masks.to(out.recon.dtype)
        scores = {
            COMPOSED: suite.score_regions(out.output, images, {FULL: None, FACE: masks}),
            DECODER: suite.score_regions(out.recon * face, images * face, {FACE: masks}),
        }
        for view, region in VIEWS:
            frame = pd.DataFrame({name: scores[view][region][name].float().cpu().numpy() for name in METRIC_NAMES})
            frame.insert(0, "region", region)
            frame.insert(0, "view", view)
            frame.insert(0, "image_id", batch_ids)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)
