"""Typed study configuration: YAML preset + optional file + `--set key=value` overrides.

Every problem (unknown loss, reversed bounds, non-positive counts, a GPU fraction above 1, an
unreadable dataset, ...) is collected and reported in one ConfigError naming each field, before
any Ray or MLflow work starts.
"""
from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from models.losses import LOSS_NAMES, loss_components

from .config import LossConfig, ModelConfig, StrictModel, TrainConfig, validation_problems
from .errors import ConfigError
from .hypotheses import Hypothesis

PRESETS = ("smoke", "paper")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SyntheticDataConfig(StrictModel):
    count: int = Field(1200, ge=30, description="Faces rendered when the dataset is made on first use.")
    size: int = Field(32, ge=8, le=1024, description="Image side of the synthetic faces in pixels.")
    seed: int = Field(0, ge=0, description="Seed of the face generator.")


class DataConfig(StrictModel):
    path: str = Field(..., description="Prepared dataset directory or object-store URI (maskvae data prepare/synth).")
    synthesize_if_missing: SyntheticDataConfig | None = Field(
        None, description="Render synthetic faces into `path` when it does not exist yet (the offline demo)."
    )


class GridConfig(StrictModel):
    losses: list[str] = Field(default_factory=lambda: list(LOSS_NAMES), min_length=1,
                              description="Reconstruction losses to compare; terms joined by '+' (l1, l2, ssim).")
    masks: list[bool] = Field(default_factory=lambda: [True, False], min_length=1,
                              description="Mask settings to compare: true = mask decoder, false = plain VAE.")

    @model_validator(mode="after")
    def _known_losses(self) -> "GridConfig":
        problems = []
        for index, loss in enumerate(self.losses):
            try:
                loss_components(loss)
            except ValueError as error:
                problems.append(f"losses.{index}: {error}")
        if len(set(self.losses)) != len(self.losses):
            problems.append("losses: duplicate entries")
        if len(set(self.masks)) != len(self.masks):
            problems.append("masks: duplicate entries")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def hypotheses(self) -> list[Hypothesis]:
        return [Hypothesis(loss, mask) for mask in self.masks for loss in self.losses]


class LogRange(StrictModel):
    low: float = Field(..., gt=0, description="Lower bound (log-uniform).")
    high: float = Field(..., gt=0, description="Upper bound (log-uniform).")

    @model_validator(mode="after")
    def _ordered(self) -> "LogRange":
        if not self.low < self.high:
            raise ValueError(f"bounds reversed or empty: low={self.low} must be < high={self.high}")
        return self


class SearchConfig(StrictModel):
    trials_per_hypothesis: int = Field(16, ge=1, le=10_000, description="Tuning trials per hypothesis (equal budget).")
    kl_weight: LogRange = Field(default_factory=lambda: LogRange(low=1e-5, high=1e-1), description="Training KL weight range.")
    lr: LogRange = Field(default_factory=lambda: LogRange(low=1e-5, high=1e-3), description="Adam learning-rate range.")
    startup_trials: int = Field(4, ge=1, description="Random trials per hypothesis before TPE takes over.")
    seed: int = Field(0, ge=0, description="Seed of every hypothesis's sampler.")


class ObjectiveConfig(StrictModel):
    metric: str = Field("val_objective", description="Validation metric to minimise. val_objective = the hypothesis's "
                        "loss with the KL term at `reference_kl_weight`; any val_* metric the trainer reports works.")
    mode: Literal["min", "max"] = Field("min", description="Whether `metric` is minimised or maximised.")
    reference_kl_weight: float = Field(1e-3, ge=0, description="Fixed KL weight inside val_objective (paper: 1e-3).")
    secondary_metric: str | None = Field(None, description="Optional second metric (e.g. val_kl) for a multi-objective "
                                         "Optuna search (distortion vs rate); the scheduler still uses `metric`.")

    @model_validator(mode="after")
    def _validation_metrics(self) -> "ObjectiveConfig":
        for field in ("metric", "secondary_metric"):
            value = getattr(self, field)
            if value is not None and not value.startswith("val_"):
                raise ValueError(f"{field} {value!r} must be a validation metric (val_*)")
        return self


class SchedulerConfig(StrictModel):
    kind: Literal["asha", "fifo"] = Field("asha", description="ASHA early stopping per hypothesis, or run every trial in full.")
    grace_period: int = Field(1, ge=1, description="Epochs every trial gets before ASHA may stop it.")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA keeps 1/reduction_factor of trials at each rung.")


class ResourceConfig(StrictModel):
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs reserved per trial.")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial; fractions pack several trials on one GPU.")
    max_concurrent_trials: int | None = Field(None, ge=1, description="Cap on trials running at once (null: as resources allow).")
    max_failures: int = Field(2, ge=0, description="Retries of a trial after a crash, resuming from its last checkpoint.")

    @model_validator(mode="after")
    def _whole_or_fractional_gpus(self) -> "ResourceConfig":
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"gpus_per_trial {self.gpus_per_trial}: above 1 it must be a whole number")
        return self


class FinalConfig(StrictModel):
    seeds: int = Field(3, ge=1, le=100, description="Retrains of each hypothesis's best configuration (different seeds).")
    epochs: int | None = Field(None, ge=1, description="Epochs of the final runs (null: train.epochs).")
    lpips: Literal["auto", "require", "off"] = Field("auto", description="LPIPS needs AlexNet weights in the torch cache: "
                                                    "'auto' reports it unavailable when missing, 'require' stops at preflight.")
    grid_faces: int = Field(8, ge=1, le=64, description="Test faces shown in the reconstruction grids.")


class TrainingConfig(StrictModel):
    epochs: int = Field(10, ge=1, le=10_000, description="Epochs per tuning trial (ASHA's max_t).")
    batch_size: int = Field(32, ge=1, le=4096, description="Mini-batch size.")
    grad_clip_norm: float | None = Field(1e-3, gt=0, description="Gradient-norm clip (paper: 1e-3); null disables.")
    loss_weights: LossConfig = Field(default_factory=LossConfig, description="Weights of the loss terms.")
    max_train_batches: int | None = Field(None, ge=1, description="Cap on training batches per epoch; null = all.")
    max_val_batches: int | None = Field(None, ge=1, description="Cap on validation batches per epoch; null = all.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': CUDA when the trial has a GPU.")
    fast_path: bool = Field(True, description="channels_last layout (CPU and CUDA), plus bf16 autocast on CUDA.")
    compile: bool = Field(False, description="torch.compile each trial's training steps; pays off only for long "
                          "trials on a GPU (`python -m benchmarks --only trainer_gpu` measures it).")


class MlflowConfig(StrictModel):
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; null = MLflow's default (sqlite:///mlflow.db here).")
    experiment: str | None = Field(None, description="Experiment name; null = the study name.")
    register_champion: bool = Field(True, description="Register the winning hypothesis's model under the study name.")
    preflight_timeout_s: float = Field(10.0, gt=0, le=300, description="How long preflight waits for the tracking server.")


class RayConfig(StrictModel):
    address: str | None = Field(None, description="Existing cluster ('auto' or ray://...); null starts local Ray.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray instance (null: all).")
    dashboard: bool = Field(True, description="Start the Ray dashboard (local Ray; bound to 127.0.0.1).")
    dashboard_port: int = Field(8265, ge=1024, le=65535, description="Dashboard port of a local Ray instance.")
    storage_path: str | None = Field(None, description="Ray experiment storage (path or URI); null = <study dir>/ray.")


class StudyConfig(StrictModel):
    name: str = Field("maskvae-smoke", description="Study name: MLflow experiment and registered-model name.")
    data: DataConfig = Field(..., description="Where the prepared faces are.")
    grid: GridConfig = Field(default_factory=GridConfig, description="The hypothesis grid (loss x mask).")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network size for every hypothesis.")
    train: TrainingConfig = Field(default_factory=TrainingConfig, description="Training settings shared by all trials.")
    search: SearchConfig = Field(default_factory=SearchConfig, description="Optuna search inside each hypothesis.")
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig, description="What a trial is scored on.")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Early stopping.")
    resources: ResourceConfig = Field(default_factory=ResourceConfig, description="Per-trial resources.")
    final: FinalConfig = Field(default_factory=FinalConfig, description="Final retraining and test evaluation.")
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig, description="Tracking.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray cluster connection.")

    @model_validator(mode="after")
    def _consistent(self) -> "StudyConfig":
        if not _NAME_PATTERN.match(self.name):
            raise ValueError(f"name {self.name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
        if self.scheduler.kind == "asha" and self.scheduler.grace_period > self.train.epochs:
            raise ValueError(f"scheduler.grace_period ({self.scheduler.grace_period}) exceeds train.epochs ({self.train.epochs})")
        return self

    def hypotheses(self) -> list[Hypothesis]:
        return self.grid.hypotheses()

    @property
    def total_trials(self) -> int:
        return len(self.hypotheses()) * self.search.trials_per_hypothesis

    def train_config(self, hypothesis: str, kl_weight: float, lr: float, seed: int, epochs: int | None = None) -> TrainConfig:
        """The one-run config a trial trains with."""
        return TrainConfig(
            hypothesis=hypothesis, epochs=epochs or self.train.epochs, batch_size=self.train.batch_size, lr=lr,
            kl_weight=kl_weight, reference_kl_weight=self.objective.reference_kl_weight,
            grad_clip_norm=self.train.grad_clip_norm, model=self.model, loss_weights=self.train.loss_weights,
            seed=seed, device=self.train.device, fast_path=self.train.fast_path, compile=self.train.compile,
            max_train_batches=self.train.max_train_batches,
            max_val_batches=self.train.max_val_batches,
        )


# --------------------------------------------------------------------------------------------
# Loading: preset -> file -> overrides -> validation (+ dataset check), all problems at once.

def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError([f"--preset: unknown preset {name!r} (choose from {', '.join(PRESETS)})"], source="arguments")
    text = resources.files("study.presets").joinpath(f"{name}.yaml").read_text()
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


def dataset_problems(config: StudyConfig) -> list[str]:
    """The dataset must be readable now, or be made on first use."""
    from data.shards import DatasetError, load_manifest

    if config.data.synthesize_if_missing is not None and not _exists(config.data.path):
        return []
    try:
        manifest = load_manifest(config.data.path)
    except DatasetError as error:
        return [f"data.path: {error}"]
    problems = []
    for split in ("train", "val", "test"):
        if manifest.counts.get(split, 0) < 1:
            problems.append(f"data.path: {config.data.path}: split '{split}' is empty")
    if config.final.grid_faces > manifest.counts.get("test", 0) > 0:
        problems.append(f"final.grid_faces: {config.final.grid_faces} exceeds the {manifest.counts['test']} test faces")
    return problems


def _exists(path: str) -> bool:
    if "://" in path:
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        return filesystem.get_file_info(inner).type != fs.FileType.NotFound
    return Path(path).exists()


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
        raise ConfigError(validation_problems(error), source="study config") from None
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
