"""The study directory's own record (`study.json`): config, phase, MLflow ids. Written atomically."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from study.config.hypotheses import parse_hypothesis
from study.config.study import StudyConfig
from study.driver.layout import StudyLayout
from study.errors import UserInputError
from study.search.selection import BestConfig
from study.search.trials import Phase, PhaseName
from study.tracking.tags import (CODE_VERSION_TAG, DATASET_HASH_TAG, LOSS_TAG, MASK_TAG, STUDY_NAME_TAG,
                                 VERSION_TAG_PREFIX)

PHASE_ORDER = Phase.ORDER


@dataclass
class StudyState:
    study_id: str
    name: str
    created: str
    config: dict[str, Any]
    phase: PhaseName = Phase.TUNE
    data_path: str = ""
    storage_path: str = ""
    tracking_uri: str = ""
    experiment: str = ""
    parents: dict[str, str | None] = field(default_factory=dict)
    best: dict[str, BestConfig] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    dashboard_url: str | None = None
    # The registered model's name, claimed with the experiment's (study.tracking.naming); "" until then.
    model_name: str = ""
    # The share key of the MLflow runs view the printed link opens (study.tracking.links); "" if none.
    hypotheses_view: str = ""
    # Hypotheses whose representative model reached their MLflow run: only these can be registered.
    logged_models: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # study.json holds each best configuration as a JSON object: typed again on load.
        self.best = {h: b if isinstance(b, BestConfig) else BestConfig(**b) for h, b in self.best.items()}

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
            LOSS_TAG: parsed.loss, MASK_TAG: str(parsed.mask).lower(), DATASET_HASH_TAG: dataset_hash,
            CODE_VERSION_TAG: self.versions.get("code", ""), STUDY_NAME_TAG: self.name,
            **{f"{VERSION_TAG_PREFIX}{k}": v for k, v in self.versions.items()},
        }

    def at_least(self, phase: str) -> bool:
        return PHASE_ORDER.index(self.phase) >= PHASE_ORDER.index(phase)


def load_study(directory: Path) -> tuple[StudyState, StudyConfig]:
    """A study directory's record and its validated config: how every command opens a study."""
    state = StudyState.load(directory)
    return state, StudyConfig.model_validate(state.config)
