"""write_study_report: from a study directory's stored scores to REPORT.md and the result tables."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from PIL import Image

from study.config.study import StudyConfig
from study.driver.layout import StudyLayout
from study.driver.publish import champion_of, write_study_report
from study.driver.state import StudyState
from tests.helpers.scores import HYPOTHESES, make_scores


def test_study_report_writes_every_table_per_view_and_region(tmp_path: Path) -> None:
    layout = StudyLayout(tmp_path)
    layout.results_dir.mkdir(parents=True)
    offsets = {h: 0.01 * k for k, h in enumerate(HYPOTHESES)}
    composed = make_scores(offsets, n_images=12, n_seeds=3, regions=("full", "face"), views=("composed",), seed=1)
    decoder = make_scores(offsets, n_images=12, n_seeds=3, regions=("face",), views=("decoder",), seed=2,
                          lpips_nan=True)
    pd.concat([composed, decoder], ignore_index=True).to_parquet(layout.scores)
    layout.grids_dir.mkdir()
    Image.new("RGB", (64, 32), (0, 0, 255)).save(layout.grids_dir / "combined.png")
    config = StudyConfig.model_validate({"data": {"path": "/nowhere"}})
    state = StudyState(study_id="abc", name="tables", created="now", config=config.model_dump(mode="json"))
    manifest = SimpleNamespace(source="synthetic", image_size=32, content_hash="h")

    report, rankings = write_study_report(layout, state, config, manifest, lpips_available=False)

    assert list(rankings) == [("decoder", "face"), ("composed", "face"), ("composed", "full")]
    for key in ("decoder_face", "composed_face", "composed_full"):
        for table in ("ranking", "mask_effect", "overall", "pareto", "factorial"):
            assert (layout.results_dir / f"{table}_{key}.csv").is_file(), f"{table}_{key}.csv"
    overall = pd.read_csv(layout.results_dir / "overall_decoder_face.csv")
    assert set(overall["hypothesis"]) == set(HYPOTHESES)
    assert {"rank", "tied", "rank_low", "rank_high", "top_group", "p_best"} <= set(overall.columns)
    assert champion_of(rankings) in set(overall.loc[overall["rank"] == 1, "hypothesis"])
    pareto = pd.read_csv(layout.results_dir / "pareto_composed_full.csv")
    assert {"on_front", "p_front", "dominant", "p_dominant"} <= set(pareto.columns)
    factorial = pd.read_csv(layout.results_dir / "factorial_decoder_face.csv")
    assert set(factorial["effect"]) == {"mask", "loss", "loss x mask"} and "lpips" not in set(factorial["metric"])
    direction = pd.read_csv(layout.results_dir / "paper_direction.csv")
    assert set(zip(direction["view"], direction["region"])) == {("decoder", "face"), ("composed", "face"),
                                                                 ("composed", "full")}
    text = report.read_text(encoding="utf-8")
    assert "figures/reconstructions.png" in text and "**Caveat:** this study ran on synthetic at 32 px" in text
