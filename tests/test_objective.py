"""The default objective: the hypothesis's loss with the KL term at a fixed reference weight."""
from __future__ import annotations

import pytest

from study.training.trainer import objective_value


def test_objective_uses_the_reference_kl_weight_not_the_training_one():
    terms = {"reconstruction": 0.5, "kl": 20.0, "mask": 0.25}
    assert objective_value(terms, reference_kl_weight=1e-3, mask_weight=1.0) == pytest.approx(0.5 + 0.02 + 0.25)
    assert objective_value(terms, reference_kl_weight=0.0, mask_weight=2.0) == pytest.approx(1.0)


def test_objective_is_not_degenerate_in_the_kl_weight():
    """A smaller training beta buys reconstruction with KL; at a fixed reference weight that trade
    is priced, so the smallest beta does not automatically win."""
    low_beta = {"reconstruction": 0.40, "kl": 200.0, "mask": 0.0}   # tiny beta: sharp but a huge KL
    mid_beta = {"reconstruction": 0.45, "kl": 20.0, "mask": 0.0}
    assert low_beta["reconstruction"] < mid_beta["reconstruction"]
    assert objective_value(mid_beta, 1e-3, 1.0) < objective_value(low_beta, 1e-3, 1.0)
