"""The settings of one final-phase run, handed from the selection to the trial that trains it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FinalRun:
    """A hypothesis's best settings retrained with one seed. A final trial's config is exactly these
    fields (fed flat to Tune), and `training.final_run.run_final` trains from them."""

    hypothesis: str
    kl_weight: float
    lr: float
    seed: int
