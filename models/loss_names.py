"""The loss-name grammar, free of torch so configs can validate names without loading a network.

A loss name is its terms joined by '+' ("ssim+l1"); `models.losses` implements each term.
"""
from __future__ import annotations

LOSS_TERMS: tuple[str, ...] = ("ssim", "l1", "l2")
LOSS_NAMES: tuple[str, ...] = ("l1", "l2", "ssim", "ssim+l1", "ssim+l2")


def loss_components(name: str) -> tuple[str, ...]:
    """Terms of a loss name: "ssim+l1" -> ("ssim", "l1"). Raises ValueError naming the problem."""
    terms = tuple(part.strip() for part in str(name).split("+"))
    unknown = [term for term in terms if term not in LOSS_TERMS]
    if unknown or not terms:
        raise ValueError(
            f"loss {name!r}: unknown term(s) {unknown}; known terms are {sorted(LOSS_TERMS)} "
            f"(combine with '+', e.g. 'ssim+l1')"
        )
    if len(set(terms)) != len(terms):
        raise ValueError(f"loss {name!r}: a term is repeated")
    return terms
