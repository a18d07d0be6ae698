"""The schema's common ground: strict models and one-line-per-field validation errors."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from study.errors import ConfigError


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def validation_problems(error: ValidationError) -> list[str]:
    """One line per problem, each naming the dotted field path."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(root)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{field}: {message}")
    return problems


def validated(model_cls: type[StrictModel], values: dict[str, Any], *, source: str = "config"):
    """Build `model_cls` or raise ConfigError listing every bad field at once."""
    try:
        return model_cls.model_validate(values)
    except ValidationError as error:
        raise ConfigError(validation_problems(error), source=source) from None
