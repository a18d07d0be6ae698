"""The study directory's own record (`study.json`): config, phase, MLflow ids. Written atomically."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from study.config.hypotheses import parse_hypothesis
from study.driver.layout import StudyLayout
from study.errors import UserInputError

PHASE_ORDER = ("tune", "final", "rank", "done")


@dataclass
class StudyState:
    study_id: str
    name: str
    created: str
    config: dict[str, Any]
    phase: str = "tune"
    data_path: str = ""
    storage_path: str = ""
    tracking_uri: str = ""
    experiment: str = ""
    parents: dict[str, str | None] = field(default_factory=dict)
    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    dashboard_url: str | None = None
    # The registered model's name, claimed with the experiment's (study.tracking.naming); "" until then.
    model_name: str = ""
    # The share key of the MLflow runs view the printed link opens (study.tracking.links); "" if none.
    hypotheses_view: str = ""
    # Hypotheses whose representative model reached their MLflow run: only these can be registered.
    logged_models: list[str] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        path = StudyLayout(directory).state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: Path) -> "StudyState":
        path = StudyLayout(directory).state_file
        if not path.is_file():
            raise UserInputError([f"{directory}: not a maskvae study directory (no {path.name})"], title="study not found")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise UserInputError([f"{path}: unreadable study record ({error})"], title="study not readable") from None

    def parent_tags(self, hypothesis: str, dataset_hash: str) -> dict[str, str]:
        """Tags of a hypothesis's MLflow parent run."""
        parsed = parse_hypothesis(hypothesis)
        return {
            "maskvae.loss": parsed.loss, "maskvae.mask": str(parsed.mask).lower(), "maskvae.dataset_hash": dataset_hash,
            "maskvae.code_version": self.versions.get("code", ""), "maskvae.study": self.name,
            **{f"maskvae.version.{k}": v for k, v in self.versions.items()},
        }

    def at_least(self, phase: str) -> bool:
        return PHASE_ORDER.index(self.phase) >= PHASE_ORDER.index(phase)
