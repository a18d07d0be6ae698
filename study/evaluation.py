"""Test-split evaluation: the paper's six metrics per image, on the full output and the face region."""
from __future__ import annotations

import pandas as pd
import torch

from data.loader import FaceData
from models.metrics import METRIC_NAMES, MetricSuite
from models.vae import FaceVAE

REGIONS = ("full", "face")


@torch.no_grad()
def evaluate(model: FaceVAE, data: FaceData, suite: MetricSuite, split: str = "test", batch_size: int = 64,
             device: torch.device | str = "cpu") -> pd.DataFrame:
    """One row per (image, region). Paper protocol for "full": mask models paste the input background
    through their *predicted* mask; "face" scores only ground-truth face pixels (the fair comparison)."""
    model.eval()
    ids = data.ids(split)
    frames, offset = [], 0
    for images, masks in data.batches(split, batch_size):
        images, masks = images.to(device), masks.to(device)
        output = model.predict(images).output
        batch_ids = ids[offset:offset + images.shape[0]]
        offset += images.shape[0]
        for region, region_mask in (("full", None), ("face", masks)):
            scores = suite(output, images, region_mask)
            frame = pd.DataFrame({name: scores[name].float().cpu().numpy() for name in METRIC_NAMES})
            frame.insert(0, "region", region)
            frame.insert(0, "image_id", batch_ids)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)
