"""Reconstruct faces with an exported model; write reconstructions and predicted masks.

Inputs of any size are brought to the model's square resolution the way its training data was
(data.geometry): `squash` resizes the whole frame (aspect ratio not kept, bilinear), `center_crop`
takes the centred square and resizes it (bicubic). Outputs are PNGs at the model's resolution:
`<stem>_reconstruction.png` (mask models: the decoder's face pasted over the resized input through
the predicted mask) and, for mask models, `<stem>_mask.png` (the predicted face mask, grey levels).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.geometry import RESIZE_MODES, resize_image
from study.errors import UserInputError
from study.training.checkpoint import load_model

DEFAULT_RESIZE = "center_crop"  # for a model whose dataset did not record how it was resized
RECONSTRUCTION_SUFFIX, MASK_SUFFIX = "_reconstruction.png", "_mask.png"


def output_names(images: list[Path]) -> list[str]:
    """Each input's output stem; two inputs that would write the same files are refused, all named at once."""
    stems = [path.stem for path in images]
    clashes = [stem for stem, count in Counter(stems).items() if count > 1]
    if clashes:
        problems = [f"{' and '.join(str(p) for p in images if p.stem == stem)}: would write the same "
                    f"{stem}{RECONSTRUCTION_SUFFIX}; rename one or predict them separately" for stem in clashes]
        raise UserInputError(problems, title="duplicate output names")
    return stems


def read_images(images: list[Path]) -> list[Image.Image]:
    """Every input decoded to RGB, or one error naming every unreadable file."""
    loaded, problems = [], []
    for path in images:
        try:
            with Image.open(path) as image:
                loaded.append(image.convert("RGB"))
        except FileNotFoundError:
            problems.append(f"{path}: no such file")
        except IsADirectoryError:
            problems.append(f"{path}: is a directory, not an image")
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            problems.append(f"{path}: cannot read image ({error.__class__.__name__})")
    if problems:
        raise UserInputError(problems, title="unreadable input image" if len(problems) == 1 else "unreadable input images")
    return loaded


def model_resize(meta: dict, override: str | None = None) -> str:
    """How inputs are resized: the flag, else what the model's dataset recorded, else DEFAULT_RESIZE."""
    resize = override or meta.get("resize") or DEFAULT_RESIZE
    if resize not in RESIZE_MODES:
        raise UserInputError([f"--resize: expected one of {', '.join(RESIZE_MODES)}, got {resize!r}"])
    return resize


def _tensor(image: Image.Image, size: int, resize: str) -> torch.Tensor:
    array = resize_image(image, size, resize).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _save(tensor: torch.Tensor, path: Path) -> None:
    array = (tensor.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)


@torch.no_grad()
def predict(model_dir: Path, images: list[Path], out: Path, *, resize: str | None = None,
            decoded: list[Image.Image] | None = None) -> list[Path]:
    """Reconstruct `images` with the exported model in `model_dir`; returns the files written.

    Every input is read and every name checked before `out` is created."""
    stems = output_names(images)
    pictures = decoded if decoded is not None else read_images(images)
    model, meta = load_model(model_dir)
    size = model.config.image_size
    mode = model_resize(meta, resize)
    batch = torch.stack([_tensor(picture, size, mode) for picture in pictures])
    result = model.eval().predict(batch)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, stem in enumerate(stems):
        target = out / f"{stem}{RECONSTRUCTION_SUFFIX}"
        _save(result.output[index], target)
        written.append(target)
        if result.mask_pred is not None:
            mask_path = out / f"{stem}{MASK_SUFFIX}"
            _save(result.mask_pred[index], mask_path)
            written.append(mask_path)
    return written
