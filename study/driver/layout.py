"""The study directory: one property per file, so no module spells a path of its own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from study.config.hypotheses import slug


@dataclass(frozen=True)
class StudyLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def state_file(self) -> Path:
        """study.json: config, phase, MLflow ids (`StudyState`)."""
        return self.root / "study.json"

    @property
    def ledger_file(self) -> Path:
        """trials.json: every trial's latest status, kept live by the driver (`study status` reads it)."""
        return self.root / "trials.json"

    @property
    def ray_storage(self) -> Path:
        """Ray's experiment storage when `ray.storage_path` is not set."""
        return self.root / "ray"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def scores(self) -> Path:
        """Per-image test scores of every final run."""
        return self.results_dir / "scores.parquet"

    @property
    def trials(self) -> Path:
        """One row per tuning trial."""
        return self.results_dir / "trials.parquet"

    @property
    def optuna_trials(self) -> Path:
        return self.results_dir / "optuna_trials.parquet"

    @property
    def grids_dir(self) -> Path:
        return self.results_dir / "grids"

    @property
    def combined_grid(self) -> Path:
        """The same test faces across all hypotheses, composed and decoder rows."""
        return self.grids_dir / "combined.png"

    def grid(self, hypothesis: str) -> Path:
        return self.grids_dir / f"{slug(hypothesis)}.png"

    def result_table(self, table: str, view_region: str) -> Path:
        """results/<table>_<view>_<region>.csv: ranking, mask_effect, overall, pareto, factorial."""
        return self.results_dir / f"{table}_{view_region}.csv"

    @property
    def paper_direction(self) -> Path:
        """Direction agreement with the paper's published numbers, per view and region."""
        return self.results_dir / "paper_direction.csv"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, hypothesis: str) -> Path:
        """The hypothesis's exported model (weights + JSON), e.g. models/ssim_l2-mask."""
        return self.models_dir / slug(hypothesis)

    @property
    def report(self) -> Path:
        return self.root / "REPORT.md"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def fetch_dir(self) -> Path:
        """Scratch space for final-run files fetched from object storage."""
        return self.root / ".fetch"
