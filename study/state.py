"""The study directory's own record (`study.json`): config, phase, MLflow ids. Written atomically."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserInputError

STATE_FILE = "study.json"
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

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, directory / STATE_FILE)

    @classmethod
    def load(cls, directory: Path) -> "StudyState":
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise UserInputError([f"{directory}: not a maskvae study directory (no {STATE_FILE})"], title="study not found")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise UserInputError([f"{path}: unreadable study record ({error})"], title="study not readable") from None

    def at_least(self, phase: str) -> bool:
        return PHASE_ORDER.index(self.phase) >= PHASE_ORDER.index(phase)
