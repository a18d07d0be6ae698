"""Ranking statistics on constructed per-image scores with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.analysis.ranking import METRIC_LABELS, METRICS, rank
from study.analysis.statistics import holm, pareto_front
from tests.helpers.dominance import dominant_hypothesis
from study.analysis.tables import format_ranking_table, ranking_table, winner_sentence
from tests.helpers.scores import LOSSES, make_scores


# --------------------------------------------------------------------------- holm


def test_holm_matches_hand_computation() -> None:
    # sorted p: 0.01, 0.02, 0.03, 0.04 (m = 4) -> 0.04, 0.06, 0.06 (monotone), 0.06
    p = [0.03, 0.01, 0.04, 0.02]
    np.testing.assert_allclose(holm(p), [0.06, 0.04, 0.06, 0.06])


def test_holm_caps_at_one_and_keeps_order() -> None:
    p = [0.5, 0.001, 0.3]
    # 0.001*3 = 0.003; 0.3*2 = 0.6; max(0.6, 0.5*1) = 0.6
    np.testing.assert_allclose(holm(p), [0.6, 0.003, 0.6])
    assert holm([0.9, 0.8]).max() == 1.0


def test_holm_rejects_invalid() -> None:
    with pytest.raises(ValueError, match="p_values"):
        holm([0.1, float("nan")])
    with pytest.raises(ValueError, match="p_values"):
        holm([1.5])


# --------------------------------------------------------------------------- seed-aware CI


def test_rank_ci_contains_true_mean_and_widens_with_fewer_images() -> None:
    offsets = {"l1/mask": 0.0, "l1/nomask": 0.05}
    big = rank(make_scores(offsets, n_images=400, noise=0.02), n_boot=400)
    small = rank(make_scores(offsets, n_images=25, noise=0.02), n_boot=400)
    for r, n in ((big, 400), (small, 25)):
        assert (r.summary["n_images"] == n).all()
        assert (r.summary["ci_low"] <= r.summary["mean"]).all()
        assert (r.summary["mean"] <= r.summary["ci_high"]).all()
    width = lambda r: (r.summary["ci_high"] - r.summary["ci_low"]).mean()  # noqa: E731
    assert width(small) > 2 * width(big)
    # base ~ U(0.2, 0.6) has mean 0.4; with 400 images the CI must cover it (offset 0 for l1/mask)
    rows = big.summary[big.summary["hypothesis"] == "l1/mask"]
    assert ((rows["ci_low"] < 0.4) & (rows["ci_high"] > 0.4)).sum() >= 5


def test_seed_to_seed_spread_widens_the_ci() -> None:
    # Same images and noise; l1/nomask's three trained models differ by a whole-model shift.
    scores = make_scores({"l1/mask": 0.0, "l1/nomask": 0.0}, n_images=200, noise=0.01)
    shaky = scores["hypothesis"] == "l1/nomask"
    shift = scores.loc[shaky, "seed"].map({0: -0.1, 1: 0.0, 2: 0.1}).to_numpy()[:, None]
    scores.loc[shaky, list(METRICS)] += shift
    r = rank(scores, n_boot=400)
    width = (r.summary["ci_high"] - r.summary["ci_low"]).groupby(r.summary["hypothesis"]).mean()
    assert width["l1/nomask"] > 3 * width["l1/mask"]


# --------------------------------------------------------------------------- dominance and rank


def test_clearly_best_hypothesis_dominates() -> None:
    offsets = {f"{loss}/{m}": 0.05 + 0.01 * k for k, (loss, m) in enumerate(
        (loss, m) for loss in LOSSES for m in ("mask", "nomask"))}
    offsets["ssim+l2/mask"] = -0.1
    r = rank(make_scores(offsets), n_boot=500)
    assert r.dominant == "ssim+l2/mask"
    assert r.pareto_front == ["ssim+l2/mask"]
    top = r.overall.iloc[0]
    assert top["hypothesis"] == "ssim+l2/mask" and top["rank"] == 1
    assert top["wins"] == len(METRICS)
    assert top["p_best"] > 0.99 and top["rank_low"] == top["rank_high"] == 1
    assert r.overall["p_best"].sum() == pytest.approx(1.0)
    assert list(r.overall["rank"]) == list(range(1, 11)) and not r.overall["tied"].any()
    assert r.top_group == ["ssim+l2/mask"]
    assert winner_sentence(r).startswith("Best: ssim+l2/mask (rank interval 1-1, separable from the rest)")
    assert "ssim+l2/mask dominates every other hypothesis (in 100% of bootstrap replicates)" in winner_sentence(r)
    assert r.reliably_dominant == "ssim+l2/mask"
    assert r.pareto.set_index("hypothesis").at["ssim+l2/mask", "p_dominant"] == 1.0


def test_incomparable_hypotheses_share_the_front() -> None:
    # A is better on the first three metrics, B on the last three: neither dominates.
    a = np.array([-0.1, -0.1, -0.1, 0.1, 0.1, 0.1])
    offsets = {"l1/mask": a, "l2/mask": -a, "ssim/mask": np.full(6, 0.3)}
    r = rank(make_scores(offsets), n_boot=300)
    assert r.dominant is None
    assert sorted(r.pareto_front) == ["l1/mask", "l2/mask"]
    assert r.overall.set_index("hypothesis").at["ssim/mask", "rank"] == 3
    assert "dominates" not in winner_sentence(r)
    front = r.pareto.set_index("hypothesis")
    assert front.loc[["l1/mask", "l2/mask"], "p_front"].min() == 1.0 and front.at["ssim/mask", "p_front"] == 0.0


def test_pareto_and_dominance_functions_directly() -> None:
    means = pd.DataFrame(
        {"a": [1.0, 2.0, 1.0, 3.0], "b": [2.0, 1.0, 2.0, 3.0]}, index=["x", "y", "z", "w"]
    )
    # x and z tie (neither strictly better) so both stay on the front; w is dominated.
    assert pareto_front(means) == ["x", "y", "z"]
    assert dominant_hypothesis(means) is None
    assert dominant_hypothesis(means.loc[["x", "w"]]) == "x"
    assert dominant_hypothesis(means.loc[["x", "z"]]) is None
    assert pareto_front(means.reset_index(names="hypothesis")) == ["x", "y", "z"]


# --------------------------------------------------------------------------- mask effect


def test_mask_effect_detects_shift_with_correct_sign() -> None:
    offsets = {"l1/mask": 0.1, "l1/nomask": 0.0, "l2/mask": -0.1, "l2/nomask": 0.0}
    r = rank(make_scores(offsets, n_images=80, noise=0.01), n_boot=500)
    eff = r.mask_effect
    assert len(eff) == 2 * len(METRICS)
    l1 = eff[eff["loss"] == "l1"]
    np.testing.assert_allclose(l1["diff"], 0.1, atol=0.01)
    assert ((l1["ci_low"] < 0.1) & (l1["ci_high"] > 0.1)).sum() >= 5
    assert (l1["p_holm"] < 0.05).all() and (l1["better"] == "nomask").all()
    assert (eff[eff["loss"] == "l2"]["better"] == "mask").all()
    assert (eff["p_holm"] >= eff["p_value"]).all()


def test_mask_effect_zero_effect_is_inconclusive() -> None:
    offsets = {"ssim/mask": 0.0, "ssim/nomask": 0.0}
    r = rank(make_scores(offsets, n_images=60, noise=0.02, seed=5), n_boot=300)
    assert (r.mask_effect["better"] == "inconclusive").all()
    assert (r.mask_effect["ci_low"] < 0).all() and (r.mask_effect["ci_high"] > 0).all()


def test_mask_effect_identical_scores_give_p_one() -> None:
    scores = make_scores({"l1/mask": 0.0}, n_seeds=3, noise=0.0)
    twin = scores.assign(hypothesis="l1/nomask", mask=False)
    r = rank(pd.concat([scores, twin], ignore_index=True), n_boot=100)
    assert (r.mask_effect["p_value"] == 1.0).all()
    assert (r.mask_effect["diff"] == 0.0).all()
    assert (r.mask_effect["better"] == "inconclusive").all()


def test_mask_effect_only_for_losses_with_both_arms() -> None:
    r = rank(make_scores({"l1/mask": 0.0, "l1/nomask": 0.1, "l2/mask": 0.0}), n_boot=100)
    assert set(r.mask_effect["loss"]) == {"l1"}
    r2 = rank(make_scores({"l1/mask": 0.0, "l2/mask": 0.1}), n_boot=100)
    assert r2.mask_effect.empty


# --------------------------------------------------------------------------- unavailable metric


def test_all_nan_lpips_is_unavailable_and_unranked() -> None:
    offsets = {"l1/mask": 0.0, "l1/nomask": 0.05}
    r = rank(make_scores(offsets, lpips_nan=True), n_boot=200)
    assert r.unavailable_metrics == ["lpips"]
    assert "lpips" not in set(r.summary["metric"])
    assert "lpips" not in set(r.mask_effect["metric"])
    assert r.metrics == [m for m in METRICS if m != "lpips"]
    assert r.overall.set_index("hypothesis").at["l1/mask", "wins"] == len(METRICS) - 1
    table = ranking_table(r)
    assert "lpips" not in table.columns and "one_minus_ssim_fmt" in table.columns
    text = format_ranking_table(r)
    assert "unavailable" in text and METRIC_LABELS["lpips"] in text.splitlines()[-2]


def test_partially_missing_metric_drops_image_everywhere() -> None:
    scores = make_scores({"l1/mask": 0.0, "l2/mask": 0.05}, n_images=20)
    scores.loc[(scores["hypothesis"] == "l2/mask") & (scores["image_id"] == "img0003"), "one_minus_vif"] = np.nan
    with pytest.warns(RuntimeWarning, match="1 image"):
        r = rank(scores, n_boot=50)
    assert r.n_dropped_images == 1
    assert (r.summary["n_images"] == 19).all()


# --------------------------------------------------------------------------- regions, input errors


def test_region_filter_and_unknown_region() -> None:
    full = make_scores({"l1/mask": 0.0, "l2/mask": 0.1})
    face = full.assign(region="face")
    face[list(METRICS)] += 1.0
    scores = pd.concat([full, face], ignore_index=True)
    full_r, face_r = rank(scores, "full", n_boot=50), rank(scores, "face", n_boot=50)
    assert face_r.region == "face"
    np.testing.assert_allclose(face_r.means().to_numpy() - full_r.means().to_numpy(), 1.0)
    with pytest.raises(ValueError, match="region 'hair'"):
        rank(scores, "hair")


def test_bad_inputs_name_the_problem() -> None:
    scores = make_scores({"l1/mask": 0.0, "l2/mask": 0.1}, n_images=10)
    with pytest.raises(ValueError, match="l2_x10"):
        rank(scores.drop(columns="l2_x10"))
    missing = scores.drop(scores[(scores["hypothesis"] == "l2/mask") & (scores["seed"] == 1)].index[:2])
    with pytest.raises(ValueError, match=r"'l2/mask' seed 1 lacks 2"):
        rank(missing)
    with pytest.raises(ValueError, match="duplicate"):
        rank(pd.concat([scores, scores.iloc[:1]]))
    with pytest.raises(ValueError, match="'mask' must be boolean"):
        rank(scores.assign(mask="maybe"))
    as_text = rank(scores.assign(mask=scores["mask"].map({True: "true", False: "false"})), n_boot=20)
    assert as_text.summary["mask"].all()
    one_hyp_nan = scores.copy()
    one_hyp_nan.loc[one_hyp_nan["hypothesis"] == "l1/mask", "one_minus_vif"] = np.nan
    with pytest.raises(ValueError, match=r"one_minus_vif.*l1/mask"):
        rank(one_hyp_nan)


def test_uneven_seed_counts_are_supported() -> None:
    scores = make_scores({"l1/mask": 0.0, "l1/nomask": 0.1}, n_seeds=3)
    scores = scores[~((scores["hypothesis"] == "l1/nomask") & (scores["seed"] == 2))]
    r = rank(scores, n_boot=100)
    seeds = r.summary.drop_duplicates("hypothesis").set_index("hypothesis")["n_seeds"]
    assert seeds.to_dict() == {"l1/mask": 3, "l1/nomask": 2}
    assert r.dominant == "l1/mask"
    assert np.isfinite(r.summary[["mean", "ci_low", "ci_high"]].to_numpy()).all()


def test_rank_is_reproducible_for_a_seed() -> None:
    scores = make_scores({"l1/mask": 0.0, "l2/mask": 0.001}, noise=0.05)
    a, b = rank(scores, n_boot=200, seed=7), rank(scores, n_boot=200, seed=7)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    pd.testing.assert_frame_equal(a.overall, b.overall)
