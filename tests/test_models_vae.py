"""FaceVAE: shapes that mirror the pooling chain, composition, reparameterisation, training step."""
from __future__ import annotations

import math

import pytest
import torch

from models.losses import loss_terms
from models.vae import FaceVAE, FaceVAEConfig, VAEOutput, pool_chain

TINY = 0.125


def _images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator)


def _box_mask(batch: int, size: int) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return mask


@pytest.mark.parametrize(
    ("size", "chain"),
    [
        (144, [144, 72, 36, 18, 9, 4, 2, 1]),
        (32, [32, 16, 8, 4, 2, 1]),
        (48, [48, 24, 12, 6, 3, 1]),
        (8, [8, 4, 2, 1]),
        (255, [255, 127, 63, 31, 15, 7, 3, 1]),
    ],
)
def test_pool_chain(size: int, chain: list[int]) -> None:
    assert pool_chain(size) == chain
    assert FaceVAE.pool_chain(size) == chain


@pytest.mark.parametrize("size", [7, 4, 256, 1000])
def test_unsupported_sizes_are_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="image_size"):
        FaceVAE(FaceVAEConfig(image_size=size, width=TINY, latent_dim=4))


@pytest.mark.parametrize(("size", "width"), [(32, TINY), (48, TINY), (144, TINY)])
@pytest.mark.parametrize("use_mask", [True, False])
def test_output_shapes(size: int, width: float, use_mask: bool) -> None:
    latent = 6
    model = FaceVAE(FaceVAEConfig(image_size=size, width=width, latent_dim=latent, use_mask=use_mask))
    x = _images(2, size)
    out = model(x)
    assert isinstance(out, VAEOutput)
    assert out.recon.shape == (2, 3, size, size)
    assert out.output.shape == (2, 3, size, size)
    assert out.mean.shape == out.log_scale.shape == out.z.shape == (2, latent)
    assert 0 < out.recon.min() and out.recon.max() < 1
    if use_mask:
        assert out.mask_logits.shape == (2, 1, size, size)
        assert torch.allclose(out.mask_pred, torch.sigmoid(out.mask_logits))
    else:
        assert out.mask_logits is None and out.mask_pred is None
        assert torch.equal(out.output, out.recon)


def _stage_sizes(decoder: torch.nn.Module, z: torch.Tensor) -> list[int]:
    sizes: list[int] = []
    hooks = [stage.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1])) for stage in decoder.stages]
    try:
        decoder(z)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def test_decoder_sizes_mirror_the_encoder_at_144() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=144, width=TINY, latent_dim=8))
    z = torch.randn(2, 8)
    assert [1, *_stage_sizes(model.decoder, z)] == [1, 2, 4, 9, 18, 36, 72, 144]
    assert [1, *_stage_sizes(model.mask_decoder, z)] == [1, 2, 4, 9, 18, 36, 72, 144]
    encoder_sizes = []
    x = _images(2, 144)
    for layer in model.encoder.features:
        x = layer(x)
        if isinstance(layer, torch.nn.MaxPool2d):
            encoder_sizes.append(x.shape[-1])
    assert encoder_sizes == [72, 36, 18, 9, 4, 2, 1]


def _conv_filters(module: torch.nn.Module, kind: type) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, kind)]


def test_paper_filter_counts_at_144() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=144, width=1.0, latent_dim=512))
    assert _conv_filters(model.encoder.features, torch.nn.Conv2d) == [32, 32, 64, 64, 128, 128, 256, 256, 256, 256, 512]
    assert model.encoder.dense[0].out_features == 512
    assert model.encoder.mean.out_features == model.encoder.log_scale.out_features == 512
    assert _conv_filters(model.decoder, torch.nn.ConvTranspose2d) == [256, 256, 256, 128, 64, 32, 32]
    assert _conv_filters(model.decoder, torch.nn.Conv2d) == [256, 256, 256, 128, 64, 32, 32, 3]
    assert _conv_filters(model.mask_decoder, torch.nn.ConvTranspose2d) == [32] * 7
    assert _conv_filters(model.mask_decoder, torch.nn.Conv2d) == [32] * 7 + [1]


def test_fewer_stages_keep_first_groups_and_last_decoder_filters() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=32, width=0.5, latent_dim=16))
    assert _conv_filters(model.encoder.features, torch.nn.Conv2d) == [16, 16, 32, 32, 64, 64, 128, 128, 256]
    assert model.encoder.dense[0].out_features == 256
    assert model.encoder.mean.out_features == 16
    assert _conv_filters(model.decoder, torch.nn.ConvTranspose2d) == [128, 64, 32, 16, 16]
    assert _conv_filters(model.mask_decoder, torch.nn.ConvTranspose2d) == [16] * 5


def test_the_config_rebuilds_the_same_network() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=48, width=TINY, latent_dim=5, use_mask=False))
    rebuilt = FaceVAE(model.config)
    assert rebuilt.config == model.config == FaceVAEConfig(48, TINY, 5, False, 3)
    rebuilt.load_state_dict(model.state_dict())  # strict: same parameter names and shapes
    assert rebuilt.mask_decoder is None


def test_the_config_is_frozen_and_required() -> None:
    config = FaceVAEConfig(image_size=32, width=1, latent_dim=4)
    assert isinstance(config.width, float)
    with pytest.raises(AttributeError):
        config.width = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="FaceVAEConfig"):
        FaceVAE({"image_size": 32})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FaceVAE(image_size=32)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [("width", 0), ("width", True), ("latent_dim", 0), ("latent_dim", 2.0), ("in_channels", 0), ("use_mask", 1),
     ("image_size", 7), ("image_size", 32.0)],
)
def test_bad_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        FaceVAEConfig(**{"image_size": 32, field: value})


def test_training_composition_uses_the_ground_truth_mask() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=4))
    x, mask = _images(3, 32), _box_mask(3, 32)
    out = model(x, mask)
    inside = mask.expand_as(x).bool()
    assert torch.equal(out.output[~inside], x[~inside])
    assert torch.allclose(out.output[inside], out.recon[inside])


def test_mask_shape_is_checked() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=4))
    with pytest.raises(ValueError, match="mask"):
        model(_images(2, 32), torch.ones(2, 3, 32, 32))
    with pytest.raises(ValueError, match="images"):
        model(_images(2, 48))


def test_predict_composes_with_the_predicted_mask() -> None:
    torch.manual_seed(0)
    model = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=4)).eval()
    x = _images(2, 32)
    out = model.predict(x)
    assert torch.equal(out.z, out.mean)
    expected = out.recon * out.mask_pred + x * (1 - out.mask_pred)
    assert torch.allclose(out.output, expected, atol=1e-6)
    # the probability composes (not a hard threshold and not the recon alone)
    assert ((out.mask_pred > 0.01) & (out.mask_pred < 0.99)).any()
    assert not torch.allclose(out.output, out.recon)
    assert torch.allclose(model.predict(x).output, out.output)  # deterministic
    plain = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=4, use_mask=False)).eval()
    plain_out = plain.predict(x)
    assert torch.equal(plain_out.output, plain_out.recon)


def _force_log_scale(model: FaceVAE, value: float) -> None:
    with torch.no_grad():
        model.encoder.log_scale.weight.zero_()
        model.encoder.log_scale.bias.fill_(value)


def test_reparameterisation_scales_noise_by_exp_log_scale() -> None:
    torch.manual_seed(0)
    model = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=256, use_mask=False))
    x = _images(4, 32)
    _force_log_scale(model, -30.0)  # std = exp(-30): z must equal the mean
    out = model(x, sample=True)
    assert torch.allclose(out.z, out.mean, atol=1e-9)
    _force_log_scale(model, math.log(2.0))  # std 2 (using log_scale itself as the std would give 0.69)
    out = model(x, sample=True)
    spread = (out.z - out.mean).std().item()
    assert abs(spread - 2.0) < 0.2, spread
    assert torch.equal(model(x, sample=False).z, model(x, sample=False).mean)


@pytest.mark.parametrize("use_mask", [True, False])
def test_one_optimiser_step_changes_every_weight(use_mask: bool) -> None:
    torch.manual_seed(0)
    model = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=8, use_mask=use_mask))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, mask = _images(4, 32), _box_mask(4, 32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    out = model(x, mask if use_mask else None)
    terms = loss_terms(out, x, mask, "ssim+l1", kl_weight=1e-3)
    optimiser.zero_grad()
    terms["total"].backward()
    optimiser.step()
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []
    assert any(name.startswith("mask_decoder") for name in before) == use_mask


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    model = FaceVAE(FaceVAEConfig(image_size=48, width=TINY, latent_dim=4)).eval()
    x = _images(2, 48)
    with torch.no_grad():
        reference = model.predict(x).output
        model = model.to(memory_format=torch.channels_last)
        result = model.predict(x.contiguous(memory_format=torch.channels_last)).output
    assert torch.allclose(reference, result, atol=1e-5)
