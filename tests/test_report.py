"""The markdown report and its figures. Two reports are written once per module (figures take about a
second each) and inspected by several tests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from study.analysis import figures as figures_mod
from study.analysis import report as report_mod
from study.analysis.ranking import METRICS, rank
from study.analysis.report import load_paper_reference, write_report
from tests.helpers.scores import HYPOTHESES, make_scores

STUDY_INFO = {
    "name": "smoke",
    "dataset": {"source": "synthetic", "image_size": 32, "content_hash": "abc123"},
    "created": "2025-01-01T00:00:00",
    "config": {"epochs": 2, "trials_per_hypothesis": 4},
    "lpips_available": False,
}
CELEBA_INFO = {**STUDY_INFO, "dataset": {"source": "celeba", "image_size": 144, "content_hash": "abc123"}}


def _rankings(n_seeds: int) -> dict:
    offsets = {h: 0.02 * k for k, h in enumerate(HYPOTHESES)}
    full = make_scores(offsets, n_images=30, n_seeds=n_seeds, lpips_nan=True, views=("composed",), seed_sd=0.005)
    face = full.assign(view="decoder", region="face")
    face[[m for m in METRICS if m != "lpips"]] += 0.05
    scores = pd.concat([full, face], ignore_index=True)
    return {(v, g): rank(scores, g, n_boot=100, view=v) for v, g in (("composed", "full"), ("decoder", "face"))}


def _trials() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"hypothesis": h, "trial_id": f"{h.replace('/', '_')}_{t}", "kl_weight": 10 ** rng.uniform(-5, -1),
             "lr": 10 ** rng.uniform(-5, -3), "objective": np.nan if t == 3 else rng.uniform(0.1, 1.0),
             "status": "ERROR" if t == 3 else "TERMINATED", "epochs": 3}
            for h in HYPOTHESES for t in range(4)]
    return pd.DataFrame(rows)


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (96, 64), colour).save(path)
    return path


@pytest.fixture(scope="module")
def rankings() -> dict:
    """Three seeds: enough for model-level tests."""
    return _rankings(3)


@pytest.fixture(scope="module")
def celeba_report(tmp_path_factory, rankings) -> tuple[Path, str]:
    """Three seeds, CelebA at 144 px (the paper's magnitudes apply), trials, per-hypothesis grids."""
    tmp = tmp_path_factory.mktemp("celeba")
    grid = _png(tmp / "grid.png", (200, 30, 30))
    path = write_report(tmp / "study", rankings, _trials(), CELEBA_INFO, recon_grids={"l1/mask": grid, "l2/nomask": grid},
                        paper_reference=load_paper_reference())
    return path.parent, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory) -> tuple[Path, str]:
    """Two seeds, synthetic 32 px faces, no trials, the combined reconstruction grid."""
    tmp = tmp_path_factory.mktemp("synthetic")
    combined = _png(tmp / "combined.png", (10, 200, 30))
    path = write_report(tmp / "study", _rankings(2), pd.DataFrame(), STUDY_INFO,
                        recon_grids={"l1/mask": combined}, paper_reference=load_paper_reference(),
                        combined_grid=combined)
    return path.parent, path.read_text(encoding="utf-8")


def _links(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def _mask_effect_rows(text: str) -> list[str]:
    return [line for section in text.split("### Mask effect")[1:] for line in section.split("###")[0].splitlines()
            if re.match(r"\| (l1|l2|ssim|ssim\+l1|ssim\+l2) \| ", line)]


def _section(text: str, heading: str) -> str:
    return text.split(heading)[1].split("\n## ")[0]


def test_report_opens_with_the_decoder_view_and_figures_are_pngs(celeba_report) -> None:
    out, text = celeba_report
    for h in HYPOTHESES:
        assert h in text
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:3] == ["## Answer", "## Ranking: face region (ground-truth mask), decoder view",
                            "## Ranking: full output, composed view"]
    answer = _section(text, "## Answer")
    assert answer.index("Decoder view, face region") < answer.index("Mask effect (model level") \
        < answer.index("Composed view, full output") < answer.index("by construction")
    assert "**crossed**" in text and "This study has 3 seeds per hypothesis" in text
    assert "unavailable" in text and "LPIPS" in text
    assert not re.search(r"\bfair\b", text, re.IGNORECASE)
    links = _links(text)
    for key in ("decoder_face", "composed_full"):
        for kind in ("metrics", "ranks", "mask_effect", "factorial"):
            assert f"figures/{kind}_{key}.png" in links
    assert {"figures/trials.png", "figures/recon_l1_mask.png", "figures/recon_l2_nomask.png"} <= set(links)
    for rel in links:
        with Image.open(out / rel) as im:  # relative to REPORT.md
            im.verify()
            assert im.format == "PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".report-tmp")]


def test_paper_magnitudes_only_at_celeba_144(celeba_report) -> None:
    _, text = celeba_report
    paper = load_paper_reference()
    composed = _section(text, "## Ranking: full output, composed view")
    decoder = _section(text, "## Ranking: face region (ground-truth mask), decoder view")
    assert "1-SSIM (paper)" in composed and "LPIPS (paper)" in composed and "(paper)" not in decoder
    assert f"{paper.at['ssim+l2/mask', 'one_minus_ssim']:.3f}" in composed
    assert "figures/paper_comparison.png" in _links(text)
    # l1/mask is best on every metric at the means, but dominates in fewer than 95% of the replicates
    # (3 seeds): on the front, not called dominant.
    assert re.search(r"\| \*\*l1/mask\*\* \|.*\| yes \(\d+%\) \|$", composed, re.MULTILINE)
    assert "No hypothesis dominates reliably (l1/mask is lowest on every metric at the means, in " in composed
    assert "dominant" not in composed.split("Pareto front:")[0].split("| Pareto front |")[1]
    direction = _section(text, "## Direction of effects against the paper")
    assert "**Caveat:**" not in direction and "Kendall's τ" in direction


def test_directions_for_every_dataset_with_a_caveat_off_celeba_144(synthetic_report) -> None:
    out, text = synthetic_report
    assert "(paper)" not in text and not (out / "figures" / "paper_comparison.png").exists()
    direction = _section(text, "## Direction of effects against the paper")
    assert "**Caveat:** this study ran on synthetic at 32 px" in direction
    assert "| l1 | 1-SSIM | -0.029 |" in direction and "Kendall's τ" in direction
    assert "decoder view, face" in direction and "composed view, full" in direction


def test_fewer_than_three_seeds_say_what_cannot_be_shown(synthetic_report) -> None:
    _, text = synthetic_report
    assert "**The effect cannot be tested at the model level**" in text
    assert "Per-seed means (each trained model's mean over the test images):" in text
    assert re.search(r"\| l1/mask \| 0, 1 \| \d\.\d{4} / \d\.\d{4} \|", text)
    assert "P(best) is not reported" in text and "This study has 2 seeds per hypothesis" in text
    assert re.search(r"\| \*\*l1/mask\*\*( ≈)? \|.*\| — \| yes \|$", text, re.MULTILINE)
    assert "with fewer than 3 seeds the bootstrap frequencies are not reported" in text
    assert "No hypothesis dominates reliably (l1/mask is lowest on every metric at the means, but its seeds" in text
    assert "| 95% CI (unadjusted) | Holm p |" in text
    rows = _mask_effect_rows(text)
    assert len(rows) == 2 * 5 * 5  # 5 losses x 5 available metrics per (view, region)
    assert all(re.search(r"\| — \| not tested \| \d/4 \|$", row) for row in rows)


def test_combined_grid_replaces_the_per_hypothesis_grids_and_no_trials(synthetic_report) -> None:
    out, text = synthetic_report
    assert "figures/reconstructions.png" in _links(text) and "recon_l1_mask" not in text
    assert (out / "figures" / "reconstructions.png").is_file()
    assert "decoder's own output and the composed output" in text
    assert "No tuning trials were recorded." in text and not (out / "figures" / "trials.png").exists()


def test_mask_effect_rows_have_verdicts_with_three_seeds(celeba_report) -> None:
    _, text = celeba_report
    rows = _mask_effect_rows(text)
    assert len(rows) == 2 * 5 * 5
    assert all(re.search(r"\| (mask|nomask|inconclusive) \| \d/9 \|$", row) for row in rows)


def test_no_panel_for_an_unavailable_metric(tmp_path: Path, rankings: dict, monkeypatch) -> None:
    saved = []
    monkeypatch.setattr(figures_mod, "save", lambda fig, path: saved.append(fig))
    r = rankings[("decoder", "face")]
    for plot in (figures_mod.plot_metric_points, figures_mod.plot_mask_effect, figures_mod.plot_factorial):
        plot(r, tmp_path / "x.png")
    for fig in saved:
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
        assert len(titles) == len(METRICS) - 1 and "LPIPS" not in titles
        assert len(fig.legends) == 1  # one figure legend, outside the panels
    assert "unavailable, not shown: LPIPS" in saved[0].get_suptitle()


def test_plot_failure_leaves_nothing_behind(tmp_path: Path, rankings: dict, monkeypatch) -> None:
    def boom(*_args, **_kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_mod, "plot_metric_points", boom)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(fresh, rankings, pd.DataFrame(), STUDY_INFO)
    assert not fresh.exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "REPORT.md").write_text("old report", encoding="utf-8")
    (existing / "keep.txt").write_text("study data", encoding="utf-8")
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(existing, rankings, pd.DataFrame(), STUDY_INFO)
    assert (existing / "REPORT.md").read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in existing.iterdir()) == ["REPORT.md", "keep.txt"]


def test_bad_inputs_are_named(tmp_path: Path, rankings: dict) -> None:
    trials = _trials()
    with pytest.raises(ValueError, match="objective"):
        write_report(tmp_path / "x", rankings, trials.drop(columns="objective"), STUDY_INFO)
    with pytest.raises(FileNotFoundError, match="l1/mask"):
        write_report(tmp_path / "y", rankings, trials, STUDY_INFO, recon_grids={"l1/mask": tmp_path / "nope.png"})
    with pytest.raises(FileNotFoundError, match="combined"):
        write_report(tmp_path / "z", rankings, trials, STUDY_INFO, combined_grid=tmp_path / "nope.png")
    with pytest.raises(ValueError, match="no rankings"):
        write_report(tmp_path / "w", {}, trials, STUDY_INFO)
    assert not [p for p in tmp_path.iterdir()]


def test_load_paper_reference(tmp_path: Path) -> None:
    paper = load_paper_reference()
    assert sorted(paper.index) == sorted(HYPOTHESES)
    assert list(paper.columns) == ["loss", "mask", *METRICS]
    assert paper.at["l1/mask", "mask"] and not paper.at["l1/nomask", "mask"]
    assert paper.at["ssim+l2/mask", "one_minus_ssim"] == pytest.approx(0.307)

    bad = tmp_path / "bad.csv"
    bad.write_text("# note\nloss,mask,one_minus_ssim\nl1,true,0.3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv.*missing"):
        load_paper_reference(bad)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_paper_reference(tmp_path / "nope.csv")
