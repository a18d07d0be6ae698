"""One failed seed (l2/nomask has 2 of 3): the sentences count what was tested and what could not be,
and the factorial and P(best) still run for every complete hypothesis."""
from __future__ import annotations

import re

import numpy as np
import pytest

from study.analysis.ranking import rank
from study.analysis.report_sections import design_markdown, factorial_notes, mask_effect_markdown, ranking_markdown
from study.analysis.tables import format_ranking_table, mask_effect_sentence, winner_sentence
from tests.helpers.scores import HYPOTHESES, make_scores

SHORT = "l2/nomask"


@pytest.fixture(scope="module")
def ranking():
    offsets = {h: 0.0 for h in HYPOTHESES}
    offsets["ssim/mask"] = -0.1  # a planted mask effect in a complete loss, about 25 seed SDs
    seeds = {h: 2 if h == SHORT else 3 for h in HYPOTHESES}
    return rank(make_scores(offsets, n_images=40, n_seeds=seeds, seed_sd=0.004, lpips_nan=True), n_boot=200)


def test_mask_effect_counts_what_ran_and_names_what_could_not(ranking) -> None:
    e = ranking.mask_effect
    tested = e[e["better"] != "not tested"]
    assert len(e) == 25 and len(tested) == 20 and set(e.loc[e["better"] == "not tested", "loss"]) == {"l2"}
    assert tested["p_holm"].notna().all() and e.loc[e["loss"] == "l2", "p_holm"].isna().all()
    sentence = mask_effect_sentence(ranking)
    counts = re.search(r"Holm across (\d+) loss x metric tests.*better on (\d+), worse on (\d+), inconclusive on (\d+)",
                       sentence)
    assert counts is not None, sentence
    n, better, worse, inconclusive = map(int, counts.groups())
    assert n == 20 and better + worse + inconclusive == 20
    assert better == int((e["better"] == "mask").sum()) == 5  # the planted ssim effect, on every metric
    assert "Tested: l1, ssim, ssim+l1, ssim+l2." in sentence
    assert "Not tested (fewer than 3 seeds on a side): l2 (3 mask / 2 no-mask seeds)." in sentence
    assert "cannot be tested" not in sentence
    table = mask_effect_markdown(ranking)
    assert "Holm-adjusted 95% CI (20 tests; † untested row, unadjusted)" in table
    assert table.count("†") == 1 + 5  # the header's key and the five untested l2 rows


def test_factorial_runs_on_the_complete_losses(ranking) -> None:
    f = ranking.factorial
    assert ranking.factorial_left_out == ["l2"]
    assert "l2" not in set(f["level"]) and {"l1", "ssim", "ssim+l1", "ssim+l2"} <= set(f["level"])
    assert f["p_value"].notna().all() and (f["min_seeds"] == 3).all()
    interaction = f[(f["effect"] == "loss x mask") & (f["level"] == "ssim")]
    assert (interaction["better"] == "negative").all(), interaction  # the planted effect is found
    assert "**Left out: l2**" in factorial_notes(ranking)


def test_p_best_is_hidden_for_the_short_hypothesis_only(ranking) -> None:
    assert ranking.short == [SHORT] and ranking.any_claims and not ranking.claims_ok
    rows = [line for line in ranking_markdown(ranking, None).splitlines()[2:]]
    for row in rows:
        p_best = row.split("|")[-3].strip()
        assert (p_best == "—") == (f" {SHORT} " in row), row
    terminal = format_ranking_table(ranking).splitlines()[3:13]
    assert [line.split()[-1] == "—" for line in terminal] == [f" {SHORT} " in line for line in terminal]
    sentence = winner_sentence(ranking)
    assert f"{SHORT} has 2 seeds (fewer than 3): P(best) and dominance frequencies are not reported for it" in sentence
    assert np.isclose(ranking.overall["p_best"].sum(), 1.0)


def test_design_section_counts_the_tests_that_ran(ranking) -> None:
    text = design_markdown([ranking])
    assert "This study has 2/3 seeds per hypothesis**: enough for model-level tests" in text
    assert f"Short of seeds: {SHORT} has 2 seeds.** Only what involves it goes untested: 20 of 25 mask-effect " \
           "tests ran, the factorial leaves out l2, and P(best) is reported for every other hypothesis." in text
    assert "cannot be tested" not in text


def test_holm_intervals_exclude_zero_exactly_with_a_holm_verdict(ranking) -> None:
    for frame in (ranking.mask_effect, ranking.factorial):
        tested = frame[frame["better"] != "not tested"]
        excludes = ((tested["holm_low"] > 0) | (tested["holm_high"] < 0)).to_numpy()
        assert excludes.tolist() == (tested["p_holm"] < ranking.alpha).tolist()
        # Never narrower than the unadjusted interval.
        assert (tested["holm_low"] <= tested["ci_low"] + 1e-12).all()
        assert (tested["holm_high"] >= tested["ci_high"] - 1e-12).all()
