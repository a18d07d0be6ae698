"""The one training config: what a single run trains. A study holds one as `train`, and each trial
trains a copy with its tuned fields (hypothesis, kl_weight, lr, seed) updated."""
from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, field_validator

from study.config.base import StrictModel, validated
from study.config.hypotheses import Hypothesis, parse_hypothesis


class ModelConfig(StrictModel):
    width: float = Field(1.0, gt=0, le=4, description="Multiplier on every filter count; 1.0 is the paper's network.")
    latent_dim: int = Field(512, ge=2, le=4096, description="Size of the latent code (the paper uses 512).")


class LossConfig(StrictModel):
    """The paper's weights are the defaults (fix 2: they are configuration, not constants)."""

    ssim: float = Field(1.0, ge=0, description="Weight of the 1-SSIM term.")
    l1: float = Field(4.0, ge=0, description="Weight of the mean absolute error term.")
    l2: float = Field(100.0, ge=0, description="Weight of the mean squared error term.")
    mask: float = Field(1.0, ge=0, description="Weight of the mask decoder's BCE + Dice loss (mask hypotheses only).")


class TrainConfig(StrictModel):
    hypothesis: str = Field("ssim+l2/mask", description="Reconstruction loss and mask use, e.g. 'ssim+l2/mask' or 'l1/nomask'.")
    epochs: int = Field(10, ge=1, le=10_000, description="Training epochs.")
    batch_size: int = Field(32, ge=1, le=4096, description="Mini-batch size (paper: 32).")
    lr: float = Field(1e-4, gt=0, lt=1, description="Adam learning rate (paper: 1e-4).")
    kl_weight: float = Field(1e-3, ge=0, le=100, description="Weight of the KL term on the per-dimension mean KL (paper: 1e-3).")
    reference_kl_weight: float = Field(
        1e-3, ge=0, description="KL weight of the fixed rate-distortion objective reported as val_objective (not the training weight)."
    )
    grad_clip_norm: float | None = Field(1e-3, gt=0, description="Gradient-norm clip (paper: 1e-3); null disables it.")
    grad_clip_scope: Literal["per_parameter", "global"] = Field(
        "per_parameter", description="per_parameter: each parameter's gradient is clipped to the norm on its own, "
        "as Keras's Adam(clipnorm=...) does in the paper; global: one norm over all gradients (torch's usual).")
    adam_eps: float = Field(1e-7, gt=0, lt=1, description="Adam's epsilon (paper, Keras default: 1e-7).")
    batch_norm_decay: float = Field(
        0.99, gt=0, lt=1, description="Decay of BatchNorm's moving statistics, Keras's convention (paper, Keras "
        "default: 0.99; torch's default is 0.9). Runs of a few hundred steps need a faster 0.9: at 0.99 the "
        "statistics validation uses still lag far behind the weights.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network size.")
    loss_weights: LossConfig = Field(default_factory=LossConfig, description="Weights of the loss terms.")
    seed: int = Field(0, ge=0, description="Seed for initialisation, sampling and data order.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present, else CPU.")
    fast_path: bool = Field(True, description="channels_last memory layout (CPU and CUDA), plus bf16 autocast on CUDA.")
    compile: bool = Field(False, description="torch.compile the training steps (each run pays the compile once; "
                          "`python -m benchmarks --only trainer_gpu` measures whether it pays off).")
    max_train_batches: int | None = Field(None, ge=1, description="Cap on training batches per epoch (quick runs); null = all.")
    max_val_batches: int | None = Field(None, ge=1, description="Cap on validation batches per epoch; null = all.")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints the trainer keeps on disk.")
    progress: bool = Field(False, description="Show a progress bar per epoch.")
    sample_faces: int = Field(8, ge=0, le=64, description="Validation faces drawn into samples.png in every checkpoint (0: none).")

    @field_validator("hypothesis")
    @classmethod
    def _known_hypothesis(cls, value: str) -> str:
        return parse_hypothesis(value).name

    @property
    def parsed_hypothesis(self) -> Hypothesis:
        return parse_hypothesis(self.hypothesis)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return validated(cls, json.loads(text), source="training config")


