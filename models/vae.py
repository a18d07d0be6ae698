"""The face VAE of arXiv 2112.02139: a conv encoder, an image decoder and an optional mask decoder.

Layers follow the authors' Keras code (training.py): conv blocks are conv -> BatchNorm -> ELU,
decoder stages are ConvBlockTranspose then ConvBlock, BatchNorm and initialisation use Keras's
defaults, and transposed convs reproduce Keras's 'same'/'valid' output alignment exactly.
Deviations: convs that feed a BatchNorm have no bias (BatchNorm's shift makes it redundant), so at
144 px the model has 4,032 (4,480 with the mask decoder) fewer parameters than the Keras one; and
sampling scales the noise by exp(log_scale), where the authors' `sampling` multiplies it by the
head's raw output although their KL term reads that output as a log standard deviation.

Sizes follow the encoder's pooling chain (floor-halving down to 1 px), so the decoder mirrors it
exactly at any supported resolution (144 px: 1, 2, 4, 9, 18, 36, 72, 144).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .files import atomic_torch_save, atomic_write, safe_torch_load

# The paper's 144 px network: seven encoder groups (each ends in a 2x2 max-pool) and seven decoder stages.
ENCODER_GROUPS: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64), (128, 128), (256, 256), (256,), (256,), (512,))
DECODER_FILTERS: tuple[int, ...] = (256, 256, 256, 128, 64, 32, 32)
MASK_DECODER_FILTERS = 32
DENSE_UNITS = 512
MIN_IMAGE_SIZE = 8
MAX_STAGES = len(ENCODER_GROUPS)
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # torch's momentum weighs the new batch: 1 - Keras's 0.99
MODEL_WEIGHTS_FILE = "model.pt"
MODEL_META_FILE = "model.json"


class ModelFileError(RuntimeError):
    """A saved model file that is missing, truncated, corrupted, unsafe or for another network."""

    user_error = True  # bad input: the CLI prints it as one line and exits 2 (study.errors.is_user_error)


@dataclass
class VAEOutput:
    """Everything one forward pass produces; `output` is what losses and metrics see."""

    recon: Tensor
    mask_logits: Tensor | None
    mask_pred: Tensor | None
    mean: Tensor
    log_scale: Tensor
    z: Tensor
    output: Tensor


def pool_chain(image_size: int) -> list[int]:
    """Spatial sizes through the encoder: floor-halving until 1 (144 -> [144, 72, 36, 18, 9, 4, 2, 1])."""
    if not isinstance(image_size, int) or isinstance(image_size, bool):
        raise ValueError(f"image_size must be an integer, got {image_size!r}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size={image_size} is too small: the model needs at least {MIN_IMAGE_SIZE} px")
    chain = [image_size]
    while chain[-1] > 1:
        chain.append(chain[-1] // 2)
    if len(chain) - 1 > MAX_STAGES:
        raise ValueError(
            f"image_size={image_size} needs {len(chain) - 1} pooling stages; the network has at most {MAX_STAGES} "
            f"(largest supported size: {2 ** (MAX_STAGES + 1) - 1} px)"
        )
    return chain


def scaled(filters: int, width: float) -> int:
    return max(1, round(filters * width))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """Keras's BatchNormalization defaults: epsilon 1e-3, moving average 0.99 (torch momentum 0.01)."""
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)


class ConvBlock(nn.Sequential):
    """3x3 conv, BatchNorm, ELU (the authors' ConvBlock). No conv bias: BatchNorm's shift makes it redundant."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            batch_norm(out_channels),
            nn.ELU(inplace=True),
        )


class KerasConvTranspose2d(nn.ConvTranspose2d):
    """3x3 stride-2 transposed conv with Keras's padding: 'same' gives 2*in, 'valid' gives 2*in + 1.

    The full (unpadded) transposed conv is 2*in + 1 wide. TF's 'same' is the adjoint of a 'same'
    stride-2 conv, which pads 0 before and 1 after, so it keeps the first 2*in rows and columns;
    torch's padding=1, output_padding=1 keeps the last 2*in instead (one pixel off).
    """

    def __init__(self, in_channels: int, out_channels: int, padding: str) -> None:
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        super().__init__(in_channels, out_channels, 3, stride=2, padding=0, bias=False)
        self.keras_padding = padding

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        if self.keras_padding == "same":
            y = y[..., : 2 * x.shape[-2], : 2 * x.shape[-1]]
        return y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keras_padding={self.keras_padding!r}"


class ConvBlockTranspose(nn.Sequential):
    """The authors' ConvBlockTranspose: transposed 3x3 stride-2 conv, BatchNorm, ELU."""

    def __init__(self, in_channels: int, out_channels: int, padding: str) -> None:
        super().__init__(
            KerasConvTranspose2d(in_channels, out_channels, padding),
            batch_norm(out_channels),
            nn.ELU(inplace=True),
        )


class Encoder(nn.Module):
    def __init__(self, groups: list[tuple[int, ...]], in_channels: int, dense_units: int, latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for group in groups:
            for filters in group:
                layers.append(ConvBlock(channels, filters))
                channels = filters
            # floor mode, so odd sizes shrink like the chain says (9 -> 4)
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(channels, dense_units), nn.ELU(inplace=True))
        self.mean = nn.Linear(dense_units, latent_dim)
        self.log_scale = nn.Linear(dense_units, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.dense(torch.flatten(self.features(x), 1))
        return self.mean(hidden), self.log_scale(hidden)


class UpStage(nn.Sequential):
    """One decoder stage to an exact target size: ConvBlockTranspose, then ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int, in_size: int, out_size: int) -> None:
        if out_size not in (2 * in_size, 2 * in_size + 1):
            raise ValueError(f"a stage doubles its input (plus one at most): cannot go from {in_size} to {out_size} px")
        padding = "same" if out_size == 2 * in_size else "valid"
        super().__init__(
            ConvBlockTranspose(in_channels, out_channels, padding),
            ConvBlock(out_channels, out_channels),
        )


class Decoder(nn.Module):
    def __init__(self, latent_dim: int, filters: list[int], sizes: list[int], out_channels: int) -> None:
        super().__init__()
        stages = []
        channels = latent_dim
        for stage_filters, in_size, out_size in zip(filters, sizes[:-1], sizes[1:]):
            stages.append(UpStage(channels, stage_filters, in_size, out_size))
            channels = stage_filters
        self.stages = nn.ModuleList(stages)
        self.head = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """Pre-activation output (the caller applies the sigmoid)."""
        x = z.reshape(z.shape[0], z.shape[1], 1, 1)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def keras_init(module: nn.Module) -> None:
    """Keras's defaults for every conv, transposed conv and dense layer: glorot_uniform kernels, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def compose(recon: Tensor, mask: Tensor, x: Tensor) -> Tensor:
    """Decoder pixels inside the mask, input pixels outside it."""
    return recon * mask + x * (1 - mask)


@dataclass(frozen=True)
class FaceVAEConfig:
    """The network's shape, and all of it: `FaceVAE(config)` builds it, `model.json` stores it."""

    image_size: int = 144
    width: float = 1.0  # scales every filter count and the 512-unit dense layer
    latent_dim: int = 512
    use_mask: bool = True
    in_channels: int = 3

    def __post_init__(self) -> None:
        pool_chain(self.image_size)
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ValueError(f"width must be a positive number, got {self.width!r}")
        for name in ("latent_dim", "in_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
        if not isinstance(self.use_mask, bool):
            raise ValueError(f"use_mask must be true or false, got {self.use_mask!r}")
        object.__setattr__(self, "width", float(self.width))


class FaceVAE(nn.Module):
    """VAE with an image decoder and, when `config.use_mask`, a face-mask decoder."""

    def __init__(self, config: FaceVAEConfig) -> None:
        if not isinstance(config, FaceVAEConfig):
            raise TypeError(f"FaceVAE takes a FaceVAEConfig, got {type(config).__name__}")
        super().__init__()
        self._config = config
        width = config.width
        chain = pool_chain(config.image_size)
        stages = len(chain) - 1
        # Fewer stages than the paper: keep its first groups and its final 512 group,
        # and the decoder's last (finest) filters, so the 1x1 bottleneck stays 512 wide.
        groups = [*ENCODER_GROUPS[: stages - 1], ENCODER_GROUPS[-1]]
        groups = [tuple(scaled(f, width) for f in group) for group in groups]
        decoder_filters = [scaled(f, width) for f in DECODER_FILTERS[-stages:]]
        sizes = chain[::-1]
        latent = config.latent_dim
        self.encoder = Encoder(groups, config.in_channels, scaled(DENSE_UNITS, width), latent)
        self.decoder = Decoder(latent, decoder_filters, sizes, config.in_channels)
        self.mask_decoder = (
            Decoder(latent, [scaled(MASK_DECODER_FILTERS, width)] * stages, sizes, 1) if config.use_mask else None
        )
        keras_init(self)

    pool_chain = staticmethod(pool_chain)

    @property
    def config(self) -> FaceVAEConfig:
        return self._config

    def save(self, directory: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
        """Write `model.pt` (CPU state dict) and `model.json` ({"config": ..., **metadata}); returns the directory."""
        if "config" in metadata:
            raise ValueError("metadata: the key 'config' is reserved for the network's shape")
        directory = Path(directory)
        state = {name: value.detach().cpu() for name, value in self.state_dict().items()}
        text = json.dumps({"config": asdict(self._config), **metadata}, indent=2, sort_keys=True, default=str)
        # Weights first: a directory whose json is there always has the weights it describes.
        atomic_torch_save(state, directory / MODEL_WEIGHTS_FILE, ModelFileError)
        atomic_write(directory / MODEL_META_FILE, lambda handle: handle.write(text.encode()), ModelFileError)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str],
             device: str | torch.device = "cpu") -> tuple[FaceVAE, dict[str, Any]]:
        """Rebuild a model written by `save`, in eval mode on `device`, and the metadata saved with it."""
        directory = Path(directory)
        meta, config = _read_meta(directory / MODEL_META_FILE)
        state = _read_weights(directory / MODEL_WEIGHTS_FILE)
        model = cls(config)
        mismatch = _state_mismatch(model.state_dict(), state)
        if mismatch:
            raise ModelFileError(f"{directory / MODEL_WEIGHTS_FILE}: weights do not match {config} ({mismatch})")
        model.load_state_dict(state)
        return model.to(device).eval(), meta

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log standard deviation."""
        expected = (self._config.in_channels, self._config.image_size, self._config.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"images must have shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        return self.encoder(x)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """Image in (0, 1) and mask logits (None without a mask decoder)."""
        recon = torch.sigmoid(self.decoder(z))
        mask_logits = self.mask_decoder(z) if self.mask_decoder is not None else None
        return recon, mask_logits

    def forward(self, x: Tensor, mask: Tensor | None = None, sample: bool = True) -> VAEOutput:
        """Encode, sample (or take the mean), decode and compose.

        Mask model: with `mask` (ground truth, training) the output is `recon*mask + x*(1-mask)`, so the
        reconstruction loss sees only face pixels; without it, the predicted mask probability composes.
        No-mask model: the output is the reconstruction and `mask` is ignored.
        """
        mean, log_scale = self.encode(x)
        # Standard reparameterisation: the head predicts log(std), so the noise is scaled by exp().
        z = mean + torch.randn_like(mean) * torch.exp(log_scale) if sample else mean
        recon, mask_logits = self.decode(z)
        mask_pred = torch.sigmoid(mask_logits) if mask_logits is not None else None
        if mask_pred is None:
            output = recon
        else:
            if mask is None:
                composing = mask_pred
            else:
                expected = (x.shape[0], 1, x.shape[2], x.shape[3])
                if tuple(mask.shape) != expected:
                    raise ValueError(f"mask must have shape {expected}, got {tuple(mask.shape)}")
                composing = mask.to(recon.dtype)
            output = compose(recon, composing, x)
        return VAEOutput(recon=recon, mask_logits=mask_logits, mask_pred=mask_pred, mean=mean,
                         log_scale=log_scale, z=z, output=output)

    def predict(self, x: Tensor) -> VAEOutput:
        """Deterministic reconstruction (z = mean) composed with the predicted mask probability."""
        return self.forward(x, mask=None, sample=False)


def _read_meta(path: Path) -> tuple[dict[str, Any], FaceVAEConfig]:
    """The saved metadata (without "config") and the config it names."""
    if not path.is_file():
        raise ModelFileError(f"{path}: model metadata not found (expected a directory written by FaceVAE.save)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: not valid JSON ({error})") from None
    raw = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: no 'config' object describing the network")
    try:
        config = FaceVAEConfig(**raw)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: invalid config ({error})") from None
    return {key: value for key, value in meta.items() if key != "config"}, config


def _read_weights(path: Path) -> dict[str, Tensor]:
    """torch.load restricted to tensors and plain containers, expecting a state dict."""
    state = safe_torch_load(path, ModelFileError)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ModelFileError(f"{path}: not a state dict (expected parameter names mapped to tensors)")
    return state


def _state_mismatch(expected: dict[str, Tensor], found: dict[str, Tensor]) -> str:
    """What differs between two state dicts, in one line ("" when they fit)."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & found.keys() if expected[k].shape != found[k].shape)
    parts = [f"{len(names)} {what}, e.g. {names[0]}" for names, what in
             ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if names]
    return "; ".join(parts)
