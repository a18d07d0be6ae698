"""Reconstruction grids: what people would rather see than read."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from models.vae import FaceVAE

def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B,C,H,W) in [0,1] -> (B,H,W,3) uint8; single-channel images become grey."""
    array = images.detach().float().clamp(0, 1).cpu()
    if array.shape[1] == 1:
        array = array.expand(-1, 3, -1, -1)
    return (array.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def reconstruction_rows(model: FaceVAE, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Input, the predicted-mask composition, the raw decoder image and the predicted mask."""
    model.eval()
    out = model.predict(images)
    rows = {"input": images, "output": out.output, "decoder": out.recon}
    if out.mask_pred is not None:
        rows["mask"] = out.mask_pred
    return rows


def save_grid(rows: dict[str, torch.Tensor], path: Path, title: str | None = None, scale: int = 2) -> Path:
    """One labelled row per entry; written atomically as PNG."""
    return save_tiles({label: _to_uint8(row) for label, row in rows.items()}, path, title, scale)


def save_rows(rows: dict[str, torch.Tensor], path: Path) -> Path:
    """The grid's rows as uint8 arrays, so grids of several runs can be combined later."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, **{label: _to_uint8(row) for label, row in rows.items()})
    return path


def load_rows(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return {label: arrays[label] for label in arrays.files}


def save_combined_grid(rows_by_hypothesis: dict[str, dict[str, np.ndarray]], path: Path, scale: int = 2) -> Path:
    """The same test faces across hypotheses: the input once, then each mask hypothesis's composed
    output (the paper's protocol) and its decoder's own image, and each no-mask hypothesis's output."""
    first = next(iter(rows_by_hypothesis.values()))
    tiles = {"input": first["input"]}
    for hypothesis, rows in rows_by_hypothesis.items():
        if "mask" not in rows:  # a no-mask model composes nothing: its output is its decoder's image
            tiles[f"{hypothesis}"] = rows["decoder"]
            continue
        tiles[f"{hypothesis} composed"] = rows["output"]
        tiles[f"{hypothesis} decoder"] = rows["decoder"]
    title = "composed: input background pasted through the predicted mask; decoder: the network's own image"
    return save_tiles(tiles, path, title, scale, label_width=150)


def save_tiles(tiles: dict[str, np.ndarray], path: Path, title: str | None = None, scale: int = 2,
               label_width: int = 64) -> Path:
    labels = list(tiles)
    count, height, width, _ = tiles[labels[0]].shape
    header = 16 if title else 0
    canvas = np.full((header + len(labels) * height * scale, label_width + count * width * scale, 3), 255, np.uint8)
    for r, label in enumerate(labels):
        for c in range(count):
            tile = tiles[label][c].repeat(scale, axis=0).repeat(scale, axis=1)
            top, left = header + r * height * scale, label_width + c * width * scale
            canvas[top:top + height * scale, left:left + width * scale] = tile
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for r, label in enumerate(labels):
        draw.text((4, header + r * height * scale + height * scale // 2 - 5), label, fill=(0, 0, 0))
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
