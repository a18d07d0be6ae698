"""Reconstruct faces with a logged or exported model; write reconstructions and predicted masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from study.training.checkpoint import load_model
from study.errors import UserInputError


def _load_image(path: Path, size: int) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
        raise UserInputError([f"{path}: cannot read image ({error.__class__.__name__})"], title="bad input image") from None
    return torch.from_numpy(array).permute(2, 0, 1)


def _save(tensor: torch.Tensor, path: Path) -> None:
    array = (tensor.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    image.save(path)


@torch.no_grad()
def predict(model_dir: Path, images: list[Path], out: Path) -> list[Path]:
    """Reconstruct `images` with the exported model in `model_dir`; returns the files written."""
    model, meta = load_model(model_dir)
    size = model.config.image_size
    batch = torch.stack([_load_image(path, size) for path in images])
    result = model.predict(batch)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, path in enumerate(images):
        target = out / f"{path.stem}_reconstruction.png"
        _save(result.output[index], target)
        written.append(target)
        if result.mask_pred is not None:
            mask_path = out / f"{path.stem}_mask.png"
            _save(result.mask_pred[index], mask_path)
            written.append(mask_path)
    return written
