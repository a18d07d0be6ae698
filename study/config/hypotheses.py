"""The hypothesis grid: reconstruction loss x face mask, as data."""
from __future__ import annotations

from dataclasses import dataclass

from models.loss_names import LOSS_NAMES, loss_components

MASK_TAGS = {True: "mask", False: "nomask"}
_TAG_TO_MASK = {tag: flag for flag, tag in MASK_TAGS.items()}


@dataclass(frozen=True, order=True)
class Hypothesis:
    loss: str
    mask: bool

    @property
    def name(self) -> str:
        return f"{self.loss}/{MASK_TAGS[self.mask]}"

    def __str__(self) -> str:
        return self.name


def parse_hypothesis(name: str) -> Hypothesis:
    """`"ssim+l2/mask"` -> Hypothesis("ssim+l2", True). Raises ValueError naming the problem."""
    loss, sep, tag = str(name).strip().partition("/")
    if not sep or tag not in _TAG_TO_MASK:
        raise ValueError(
            f"hypothesis {name!r} must look like '<loss>/mask' or '<loss>/nomask' (e.g. 'ssim+l2/mask')"
        )
    loss_components(loss)  # raises ValueError naming unknown terms
    return Hypothesis(loss=loss, mask=_TAG_TO_MASK[tag])


def hypothesis_grid(losses: tuple[str, ...] = LOSS_NAMES, masks: tuple[bool, ...] = (True, False)) -> list[Hypothesis]:
    """Every loss x mask combination, mask variants first like the paper's tables."""
    return [Hypothesis(loss, mask) for mask in masks for loss in losses]


def slug(hypothesis: str) -> str:
    """A file-name-safe form: 'ssim+l2/mask' -> 'ssim_l2-mask'."""
    return hypothesis.replace("/", "-").replace("+", "_")
