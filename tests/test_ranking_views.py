"""Ranks that say what is separable, the fewer-than-3-seeds paths, (view, region) handling, the headline
and the champion, and direction agreement with the paper."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.analysis.paper import direction_agreement, load_paper_reference, ranking_agreement
from study.analysis.ranking import METRICS, rank
from study.analysis.scores import pairs_present
from study.analysis.tables import COMPOSED_CAVEAT, format_headline, format_ranking_table, winner_sentence
from study.analysis.figures_ranks import separable_groups
from study.driver.publish import champion_of, rankings_from_scores
from tests.helpers.scores import HYPOTHESES, make_scores

# --------------------------------------------------------------------------- ties and separability


def test_exact_ties_share_a_rank_whatever_the_input_order() -> None:
    twin = make_scores({"l2/mask": 0.0}, noise=0.0)
    scores = pd.concat([make_scores({"l1/mask": 0.1, "ssim/mask": -0.1}, noise=0.0), twin,
                        twin.assign(hypothesis="l2/nomask", mask=False)], ignore_index=True)
    forward = rank(scores, n_boot=100)
    backward = rank(scores.iloc[::-1].reset_index(drop=True), n_boot=100)
    for r in (forward, backward):
        o = r.overall.set_index("hypothesis")
        assert o.at["l2/mask", "rank"] == o.at["l2/nomask", "rank"] == 2
        assert o.at["l2/mask", "tied"] and o.at["l2/nomask", "tied"] and not o.at["ssim/mask", "tied"]
        assert o.at["l1/mask", "rank"] == 4  # competition ranking: 1, 2=, 2=, 4
    pd.testing.assert_frame_equal(forward.overall, backward.overall)
    assert "2=" in format_ranking_table(forward)


def test_close_hypotheses_are_marked_not_distinguishable() -> None:
    offsets = {"l1/mask": 0.0, "l2/mask": 0.002, "ssim/mask": 0.2}
    r = rank(make_scores(offsets, n_seeds=3, seed_sd=0.02, seed=1), n_boot=400)
    assert r.top_group == ["l1/mask", "l2/mask"] or r.top_group == ["l2/mask", "l1/mask"]
    o = r.overall.set_index("hypothesis")
    assert not o.at["ssim/mask", "top_group"] and o.at["ssim/mask", "rank_low"] == 3
    sentence = winner_sentence(r)
    assert sentence.startswith("Not distinguishable at the top: ") and "l1/mask" in sentence and "l2/mask" in sentence
    assert "*: not distinguishable from the best" in format_ranking_table(r)


def test_separable_groups_join_overlapping_rank_intervals() -> None:
    # intervals in rank order: [1,2], [1,3], [3,4], [4,4]
    assert separable_groups(np.array([1, 1, 3, 4]), np.array([2, 3, 4, 4])) == [(0, 1), (1, 2), (2, 3)]
    assert separable_groups(np.array([1, 2, 3]), np.array([1, 2, 3])) == []


# --------------------------------------------------------------------------- fewer than 3 seeds


@pytest.mark.parametrize("n_seeds", [1, 2])
def test_fewer_than_three_seeds_cannot_test_the_mask_at_model_level(n_seeds: int) -> None:
    offsets = {"l1/mask": -0.1, "l1/nomask": 0.0, "l2/mask": 0.0, "l2/nomask": 0.05}
    r = rank(make_scores(offsets, n_seeds=n_seeds, seed_sd=0.01), n_boot=200)
    e = r.mask_effect
    assert (e["better"] == "not tested").all() and e["p_value"].isna().all() and e["p_holm"].isna().all()
    assert np.isfinite(e[["diff", "ci_low", "ci_high"]].to_numpy()).all()
    assert (e["pairs"] == n_seeds * n_seeds).all()
    l1 = e[e["loss"] == "l1"]
    assert (l1["mask_better_pairs"] == l1["pairs"]).all()  # a 0.1 shift wins every seed pairing
    assert not r.claims_ok and (r.summary["seeds_assessed"] == (n_seeds >= 2)).all()
    assert r.factorial["p_value"].isna().all() and len(r.factorial)
    assert len(r.seed_means) == 4 * n_seeds * len(METRICS)
    table = format_ranking_table(r)
    assert "P(best)" in table and all(line.rstrip().endswith("—") for line in table.splitlines()[3:7])
    assert "P(best) and dominance frequencies are not reported" in winner_sentence(r)
    assert ("not assessed" in winner_sentence(r)) == (n_seeds == 1)
    headline = format_headline({("composed", "full"): r})
    assert "cannot be tested at the model level" in headline


# --------------------------------------------------------------------------- views and regions


def _two_views(**kwargs) -> pd.DataFrame:
    """Decoder view: nomask wins. Composed view: mask wins (its background is the input itself)."""
    decoder = make_scores({h: (0.0 if h.endswith("nomask") else 0.05) + 0.01 * k for k, h in enumerate(HYPOTHESES)},
                          regions=("face",), views=("decoder",), **kwargs)
    composed = make_scores({h: (0.0 if h.endswith("/mask") else 0.05) + 0.01 * k for k, h in enumerate(HYPOTHESES)},
                           regions=("full", "face"), views=("composed",), **kwargs)
    return pd.concat([composed, decoder], ignore_index=True)


def test_every_view_region_pair_is_ranked_headline_first() -> None:
    scores = _two_views(n_images=20)
    assert pairs_present(scores) == [("decoder", "face"), ("composed", "face"), ("composed", "full")]
    rankings = rankings_from_scores(scores, n_boot=100)
    assert list(rankings) == [("decoder", "face"), ("composed", "face"), ("composed", "full")]
    for (view, region), r in rankings.items():
        assert (r.view, r.region, r.key) == (view, region, f"{view}_{region}")
    assert rankings[("decoder", "face")].overall.iloc[0]["hypothesis"] == "l1/nomask"
    assert rankings[("composed", "full")].overall.iloc[0]["hypothesis"] == "l1/mask"
    assert champion_of(rankings) == "l1/nomask"
    assert champion_of(rankings, view="composed", region="full") == "l1/mask"
    # An absent criterion falls back to the first available pair (the headline).
    assert champion_of(rankings, view="decoder", region="full") == "l1/nomask"


def test_legacy_scores_without_a_view_are_composed() -> None:
    legacy = make_scores({"l1/mask": 0.0, "l1/nomask": 0.1}, regions=("full", "face"))
    assert "view" not in legacy.columns
    assert pairs_present(legacy) == [("composed", "face"), ("composed", "full")]
    rankings = rankings_from_scores(legacy, n_boot=50)
    assert {r.view for r in rankings.values()} == {"composed"}
    assert champion_of(rankings) == "l1/mask"
    with pytest.raises(ValueError, match="view 'decoder', region 'face'.*present: \\['composed/face'"):
        rank(legacy, "face", view="decoder")


def test_headline_opens_with_the_decoder_view_and_explains_the_composed_one() -> None:
    rankings = rankings_from_scores(_two_views(n_images=20, lpips_nan=True), n_boot=100)
    text = format_headline(rankings)
    lines = text.splitlines()
    assert lines[0].startswith("Ranking, decoder view, face region")
    decoder_end = text.index("Mask effect")
    composed_at = text.index("Ranking, composed view, full output")
    assert decoder_end < composed_at < text.index(COMPOSED_CAVEAT)
    assert "Also in the report: composed view, face region" in text
    assert "unavailable (no scores, not ranked): LPIPS" in text and "fair" not in text.lower()


# --------------------------------------------------------------------------- the paper


def test_direction_and_kendall_tau_against_the_paper() -> None:
    paper = load_paper_reference()
    # This study's means are the paper's numbers plus one shift per metric (the image base).
    same = make_scores({h: paper.loc[h, list(METRICS)].to_numpy(float) for h in HYPOTHESES}, noise=0.0)
    r = rank(same, n_boot=50)
    d = direction_agreement(r, paper)
    assert len(d) == 5 * len(METRICS) and d["agree"].all()
    np.testing.assert_allclose(d["study_diff"], d["paper_diff"], atol=1e-9)
    tau = ranking_agreement(r, paper).set_index("ranking")["kendall_tau"]
    assert tau["mean rank over metrics"] == pytest.approx(1.0) and (tau > 0.99).all()

    flipped = make_scores({h: -paper.loc[h, list(METRICS)].to_numpy(float) for h in HYPOTHESES}, noise=0.0)
    r2 = rank(flipped, n_boot=50)
    assert not direction_agreement(r2, paper)["agree"].any()
    assert ranking_agreement(r2, paper).set_index("ranking").at["mean rank over metrics", "kendall_tau"] == \
        pytest.approx(-1.0)
