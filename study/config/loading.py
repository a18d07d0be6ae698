"""Loading a study config: preset -> YAML file -> `--set key=value` overrides -> validation.

Every problem (unknown loss, reversed bounds, non-positive counts, a GPU fraction above 1, an
unreadable dataset, ...) is collected and reported in one ConfigError naming each field, before
any Ray or MLflow work starts.
"""
from __future__ import annotations

import copy
import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from study.config.base import StrictModel, validation_problems
from study.config.study import StudyConfig
from study.errors import ConfigError

PRESETS = ("smoke", "paper")


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError([f"--preset: unknown preset {name!r} (choose from {', '.join(PRESETS)})"], source="arguments")
    text = resources.files("study.config.presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError([f"--config: {path}: file not found"], source="arguments") from None
    except yaml.YAMLError as error:
        raise ConfigError([f"--config: {path}: not valid YAML ({error})"], source="arguments") from None
    if not isinstance(values, dict):
        raise ConfigError([f"--config: {path}: expected a mapping at the top level"], source="arguments")
    return values


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. search.trials_per_hypothesis=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    problems, result = [], copy.deepcopy(values)
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ValueError as error:
            problems.append(str(error))
            continue
        target = result
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = value
    if problems:
        raise ConfigError(problems, source="arguments")
    return result


def parse_key(override: str) -> str:
    return override.partition("=")[0].strip()


def known_fields() -> list[str]:
    """Every dotted field and section of the study config (`train`, `train.model`, `train.model.width`, ...)."""
    names: set[str] = set()
    for field, _ in config_field_docs():
        parts = field.split(".")
        names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(names)


def with_suggestions(problems: list[str], override_keys: list[str]) -> list[str]:
    """An unknown field gets the closest known one: `train.epoch: unknown field (did you mean train.epochs?)`.
    The match is made on the whole `--set` key that introduced the field, so `trian.epochs` finds `train.epochs`."""
    fields = known_fields()
    suggested = []
    for problem in problems:
        field, _, message = problem.partition(": ")
        if message == "unknown field":
            typed = next((key for key in override_keys if key == field or key.startswith(field + ".")), field)
            match = difflib.get_close_matches(typed, fields, n=1, cutoff=0.6)
            if match:
                problem = f"{field}: unknown field (did you mean {match[0]}?)"
        suggested.append(problem)
    return suggested


def dataset_problems(config: StudyConfig) -> list[str]:
    """The dataset must be readable now, or be made on first use."""
    from data import storage
    from data.errors import DatasetError
    from data.manifest import load_manifest

    if config.data.synthesize_if_missing is not None and not storage.exists(config.data.path):
        return []
    try:
        missing = not storage.exists(config.data.path)
    except (OSError, ValueError):  # an unreachable object store: load_manifest below says why
        missing = False
    if missing:
        return [f"data.path: no prepared dataset at {config.data.path}; make it first with `maskvae data prepare "
                f"{config.data.path} --source celeba --images DIR --masks DIR --partition FILE --size 144` "
                "(README: Data), or point --set data.path=DIR at one"]
    try:
        manifest = load_manifest(config.data.path)
    except DatasetError as error:
        return [f"data.path: {error.summary}" if len(error.problems) <= 1 else f"data.path: {error}"]
    problems = []
    for split in ("train", "val", "test"):
        if manifest.counts.get(split, 0) < 1:
            problems.append(f"data.path: {config.data.path}: split '{split}' is empty")
    if config.final.grid_faces > manifest.counts.get("test", 0) > 0:
        problems.append(f"final.grid_faces: {config.final.grid_faces} exceeds the {manifest.counts['test']} test faces")
    return problems


def load_study_config(preset: str | None = None, config_file: Path | None = None, overrides: list[str] | None = None,
                      *, check_data: bool = True) -> StudyConfig:
    # A config file stands on the schema's defaults unless a preset is named too.
    values = preset_values(preset) if preset else ({} if config_file is not None else preset_values("smoke"))
    if config_file is not None:
        values = deep_merge(values, read_yaml(config_file))
    values = apply_overrides(values, overrides or [])
    try:
        config = StudyConfig.model_validate(values)
    except ValidationError as error:
        problems = with_suggestions(validation_problems(error), [parse_key(text) for text in overrides or []])
        raise ConfigError(problems, source="study config") from None
    if check_data:
        problems = dataset_problems(config)
        if problems:
            raise ConfigError(problems, source="study config")
    return config


def config_field_docs(model_cls: type[StrictModel] = StudyConfig, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted field, description) for every field: the CLI prints these with `study run --help-config`."""
    rows = []
    for name, field in model_cls.model_fields.items():
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, StrictModel) else None
        if nested is None:
            for arg in getattr(annotation, "__args__", ()):
                if isinstance(arg, type) and issubclass(arg, StrictModel):
                    nested = arg
        if nested is not None:
            rows.extend(config_field_docs(nested, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", field.description or ""))
    return rows
