"""The markdown report and its figures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from study.analysis import report as report_mod
from study.analysis.ranking import METRICS, rank
from study.analysis.report import load_paper_reference, write_report
from tests.test_ranking import LOSSES, make_scores

HYPOTHESES = [f"{loss}/{m}" for loss in LOSSES for m in ("mask", "nomask")]


@pytest.fixture(scope="module")
def rankings() -> dict:
    offsets = {h: 0.02 * k for k, h in enumerate(HYPOTHESES)}
    full = make_scores(offsets, n_images=30, n_seeds=2, lpips_nan=True)
    face = full.assign(region="face")
    face[[m for m in METRICS if m != "lpips"]] += 0.05
    scores = pd.concat([full, face], ignore_index=True)
    return {g: rank(scores, g, n_boot=100) for g in ("full", "face")}


@pytest.fixture()
def trials() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for h in HYPOTHESES:
        for t in range(4):
            rows.append(
                {
                    "hypothesis": h,
                    "trial_id": f"{h.replace('/', '_')}_{t}",
                    "kl_weight": 10 ** rng.uniform(-5, -1),
                    "lr": 10 ** rng.uniform(-5, -3),
                    "objective": np.nan if t == 3 else rng.uniform(0.1, 1.0),
                    "status": "ERROR" if t == 3 else "TERMINATED",
                    "epochs": 3,
                }
            )
    return pd.DataFrame(rows)


STUDY_INFO = {
    "name": "smoke",
    "dataset": {"source": "synthetic", "image_size": 32, "content_hash": "abc123"},
    "created": "2025-01-01T00:00:00",
    "config": {"epochs": 2, "trials_per_hypothesis": 4},
    "lpips_available": False,
}


def _links(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def test_report_mentions_everything_and_figures_are_pngs(tmp_path: Path, rankings: dict, trials) -> None:
    grid = tmp_path / "grid.png"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(grid)
    out = tmp_path / "study"
    path = write_report(out, rankings, trials, STUDY_INFO, recon_grids={"l1/mask": grid, "l2/nomask": grid})
    assert path == out / "REPORT.md"
    text = path.read_text(encoding="utf-8")
    for h in HYPOTHESES:
        assert h in text
    assert "Dominant hypothesis: l1/mask" in text
    assert "unavailable" in text and "LPIPS" in text
    assert "(paper)" not in text and "paper" not in text.lower()
    links = _links(text)
    for expected in ("figures/metrics_full.png", "figures/metrics_face.png", "figures/trials.png"):
        assert expected in links
    assert "figures/recon_l1_mask.png" in links and "figures/recon_l2_nomask.png" in links
    for rel in links:
        with Image.open(out / rel) as im:  # relative to REPORT.md
            im.verify()
            assert im.format == "PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".report-tmp")]


def test_paper_column_only_with_paper_reference(tmp_path: Path, rankings: dict, trials) -> None:
    paper = load_paper_reference()
    path = write_report(tmp_path / "a", rankings, trials, STUDY_INFO, paper_reference=paper)
    text = path.read_text(encoding="utf-8")
    full_section = text.split("## Ranking: full output")[1].split("## Ranking:")[0]
    face_section = text.split("## Ranking: face region")[1].split("## Mask vs no mask")[0]
    assert "1-SSIM (paper)" in full_section and "LPIPS (paper)" in full_section
    assert "(paper)" not in face_section
    assert f"{paper.at['ssim+l2/mask', 'one_minus_ssim']:.3f}" in full_section
    assert "figures/paper_comparison.png" in _links(text)
    with Image.open(tmp_path / "a" / "figures" / "paper_comparison.png") as im:
        assert im.format == "PNG"

    plain = write_report(tmp_path / "b", rankings, trials, STUDY_INFO).read_text(encoding="utf-8")
    assert "(paper)" not in plain
    assert not (tmp_path / "b" / "figures" / "paper_comparison.png").exists()


def test_plot_failure_leaves_nothing_behind(tmp_path: Path, rankings: dict, trials, monkeypatch) -> None:
    def boom(*_args, **_kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_mod, "plot_trials", boom)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(fresh, rankings, trials, STUDY_INFO)
    assert not fresh.exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "REPORT.md").write_text("old report", encoding="utf-8")
    (existing / "keep.txt").write_text("study data", encoding="utf-8")
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(existing, rankings, trials, STUDY_INFO)
    assert (existing / "REPORT.md").read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in existing.iterdir()) == ["REPORT.md", "keep.txt"]


def test_empty_trials_and_mask_effect_table(tmp_path: Path, rankings: dict) -> None:
    text = write_report(tmp_path, rankings, pd.DataFrame(), STUDY_INFO).read_text(encoding="utf-8")
    assert "No tuning trials were recorded." in text
    assert "figures/trials.png" not in text and not (tmp_path / "figures" / "trials.png").exists()
    mask_section = text.split("## Mask vs no mask")[1]
    # 5 losses x 5 available metrics per region, each row with a verdict
    rows = [line for line in mask_section.splitlines() if line.startswith("| l") or line.startswith("| s")]
    assert len(rows) == 2 * 5 * 5
    assert all(re.search(r"\| (mask|nomask|inconclusive) \|$", row) for row in rows)


def test_bad_inputs_are_named(tmp_path: Path, rankings: dict, trials) -> None:
    with pytest.raises(ValueError, match="objective"):
        write_report(tmp_path / "x", rankings, trials.drop(columns="objective"), STUDY_INFO)
    with pytest.raises(FileNotFoundError, match="l1/mask"):
        write_report(tmp_path / "y", rankings, trials, STUDY_INFO, recon_grids={"l1/mask": tmp_path / "nope.png"})
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


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
