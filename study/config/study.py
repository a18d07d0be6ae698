"""The study's schema, one section per concern; every field is documented where it is declared."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from models.loss_names import LOSS_NAMES, loss_components

from study.config.base import StrictModel
from study.config.hypotheses import Hypothesis
from study.config.train import TrainConfig
from study.config.views import COMPOSED, DECODER, FACE, FULL

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
                        "loss with the KL term at `train.reference_kl_weight`; any val_* metric the trainer reports works.")
    mode: Literal["min", "max"] = Field("min", description="Whether `metric` is minimised or maximised.")
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
    reuse_actors: bool | None = Field(
        None, description="Run a hypothesis's next trial in the previous trial's actor (null: on local Ray only). Reuse "
        "saves an actor start per trial (a process, torch, the dataset: ~4 s, half a smoke trial), but on a cluster "
        "shared with other studies a reused actor keeps its slot from one trial to the next, and the dashboard's "
        "Actors page can then no longer name the trial an actor runs; without reuse every trial returns its slot.")

    @model_validator(mode="after")
    def _whole_or_fractional_gpus(self) -> "ResourceConfig":
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"gpus_per_trial {self.gpus_per_trial}: above 1 it must be a whole number")
        return self


class ChampionConfig(StrictModel):
    view: Literal[DECODER, COMPOSED] = Field(
        DECODER, description="Which scoring view picks the champion: 'decoder' (the network's own output on the "
        "ground-truth face, no input pixels) or 'composed' (the paper's protocol: mask models paste the input "
        "background through their predicted mask, which wins by construction).")
    region: Literal[FACE, FULL] = Field(FACE, description="Region of that view ('decoder' is scored on 'face' only).")

    @model_validator(mode="after")
    def _scored_pair(self) -> "ChampionConfig":
        if self.view == DECODER and self.region != FACE:
            raise ValueError("view 'decoder' is scored on region 'face' only")
        return self


class FinalConfig(StrictModel):
    seeds: int = Field(3, ge=1, le=100, description="Retrains of each hypothesis's best configuration (different "
                       "seeds). The trained model is the unit of replication: at least 3 are needed to test the "
                       "mask effect at the model level.")
    champion: ChampionConfig = Field(default_factory=ChampionConfig,
                                     description="How the champion is chosen: overall rank 1 in this view and region.")
    epochs: int | None = Field(None, ge=1, description="Epochs of the final runs (null: train.epochs).")
    lpips: Literal["auto", "require", "off"] = Field("auto", description="LPIPS needs AlexNet weights in the torch cache: "
                                                    "'auto' reports it unavailable when missing, 'require' stops at preflight.")
    grid_faces: int = Field(8, ge=1, le=64, description="Test faces shown in the reconstruction grids.")


class MlflowConfig(StrictModel):
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; null = MLflow's default (sqlite:///mlflow.db here).")
    experiment: str | None = Field(None, description="Experiment name; null = the study name.")
    artifact_location: str | None = Field(None, description="Where a new experiment keeps its artifacts (models, "
                                          "images, the report), e.g. s3://bucket/maskvae/mlflow; null = the tracking "
                                          "store's default. MLflow fixes it when the experiment is created.")
    register_champion: bool = Field(True, description="Register the winning hypothesis's model under the study name.")
    preflight_timeout_s: float = Field(10.0, gt=0, le=300, description="How long preflight waits for the tracking server.")


class RayConfig(StrictModel):
    address: str | None = Field(None, description="Existing cluster ('auto' or ray://...); null starts local Ray.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray instance (null: all).")
    dashboard: bool = Field(True, description="Start the Ray dashboard (local Ray; bound to 127.0.0.1).")
    dashboard_port: Literal["auto"] | int = Field(
        "auto", description="Dashboard port of a local Ray instance: 'auto' takes the first free port from 8265 on "
        "(printed), a number (1024-65535) is refused when taken.")
    storage_path: str | None = Field(None, description="Ray experiment storage (path or URI); null = <study dir>/ray.")
    shared_filesystem: bool = Field(
        False, description="Every node of the cluster sees this machine's local paths (all nodes on one host, or a "
        "shared mount preflight does not recognise): local data.path and storage_path are then not refused.")

    @field_validator("dashboard_port", mode="before")
    @classmethod
    def _port(cls, value):
        if value == "auto":
            return value
        if isinstance(value, bool) or not str(value).isdigit() or not 1024 <= int(value) <= 65535:
            raise ValueError(f"expected 'auto' or a port number 1024-65535, got {value!r}")
        return int(value)


class StudyConfig(StrictModel):
    name: str = Field("maskvae-smoke", description="Study name: MLflow experiment and registered-model name.")
    data: DataConfig = Field(..., description="Where the prepared faces are.")
    grid: GridConfig = Field(default_factory=GridConfig, description="The hypothesis grid (loss x mask).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training settings shared by all trials; "
                               "each trial trains a copy with its hypothesis, kl_weight, lr and seed filled in.")
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

    def trial_config(self, hypothesis: str, kl_weight: float, lr: float, seed: int, epochs: int | None = None) -> TrainConfig:
        """The one-run config a trial trains with: `train` with the trial's own fields filled in."""
        return TrainConfig.model_validate({
            **self.train.model_dump(), "hypothesis": hypothesis, "kl_weight": float(kl_weight), "lr": float(lr),
            "seed": int(seed), "epochs": epochs or self.train.epochs,
        })
