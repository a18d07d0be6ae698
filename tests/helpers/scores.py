"""Simulated per-image test scores with a known truth, shaped like results/scores.parquet."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis.scores import METRICS

LOSSES = ("l1", "l2", "ssim", "ssim+l1", "ssim+l2")
HYPOTHESES = [f"{loss}/{m}" for loss in LOSSES for m in ("mask", "nomask")]


def make_scores(
    offsets: dict[str, np.ndarray | float],
    n_images: int = 60,
    n_seeds: int | dict[str, int] = 3,
    noise: float = 0.01,
    seed: int = 0,
    regions: tuple[str, ...] = ("full",),
    lpips_nan: bool = False,
    views: tuple[str, ...] | None = None,
    seed_sd: float = 0.0,
) -> pd.DataFrame:
    """Per-image scores: a per-image base shared by every model (U(0.2, 0.6), mean 0.4), plus the
    hypothesis's offset (per metric), plus a whole-model shift per seed (N(0, seed_sd), per metric),
    plus per-image noise. `views=None` writes a legacy file without a `view` column."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.6, size=(n_images, len(METRICS)))
    ids = [f"img{i:04d}" for i in range(n_images)]
    frames = []
    for view in views or (None,):
        for region in regions:
            for hyp, off in offsets.items():
                loss, mask = hyp.split("/")
                seeds = n_seeds[hyp] if isinstance(n_seeds, dict) else n_seeds
                for s in range(seeds):
                    shift = rng.normal(0, seed_sd, size=len(METRICS)) if seed_sd else 0.0
                    vals = base + np.asarray(off, dtype=float) + shift + rng.normal(0, noise, size=base.shape)
                    d = pd.DataFrame(vals, columns=list(METRICS))
                    if lpips_nan:
                        d["lpips"] = np.nan
                    d.insert(0, "hypothesis", hyp)
                    d.insert(1, "loss", loss)
                    d.insert(2, "mask", mask == "mask")
                    d.insert(3, "seed", s)
                    d.insert(4, "image_id", ids)
                    d.insert(5, "region", region)
                    if view is not None:
                        d.insert(6, "view", view)
                    frames.append(d)
    return pd.concat(frames, ignore_index=True)
