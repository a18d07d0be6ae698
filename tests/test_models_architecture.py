"""Fidelity to the authors' Keras network: layer order, parameter totals, BatchNorm, initialisation, alignment."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.vae import FaceVAE, FaceVAEConfig, KerasConvTranspose2d

TINY = 0.125


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("use_mask", "total"), [(False, 9_055_299), (True, 9_323_748)])
def test_parameter_totals_of_the_paper_network(use_mask: bool, total: int) -> None:
    # The Keras model's count less the biases of the convs that feed a BatchNorm.
    model = FaceVAE(FaceVAEConfig(image_size=144, width=1.0, latent_dim=512, use_mask=use_mask))
    assert _trainable(model) == total


def test_a_decoder_stage_is_conv_block_transpose_then_conv_block() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=4))
    for decoder in (model.decoder, model.mask_decoder):
        for stage in decoder.stages:
            leaves = [type(m) for m in stage.modules() if not list(m.children())]
            assert leaves == [KerasConvTranspose2d, nn.BatchNorm2d, nn.ELU, nn.Conv2d, nn.BatchNorm2d, nn.ELU]
            assert stage[0][0].bias is None and stage[1][0].bias is None


def test_the_odd_stage_at_144_uses_valid_padding() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=144, width=TINY, latent_dim=4))
    paddings = [stage[0][0].keras_padding for stage in model.decoder.stages]
    assert paddings == ["same", "same", "valid", "same", "same", "same", "same"]


def test_every_batch_norm_has_keras_defaults() -> None:
    model = FaceVAE(FaceVAEConfig(image_size=32, width=TINY, latent_dim=4))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 9 + 2 * 2 * 5  # encoder convs + two blocks per stage in both decoders
    assert all(m.eps == 1e-3 and m.momentum == pytest.approx(1 - 0.99) for m in norms)


def _glorot_limit(layer: nn.Module) -> float:
    weight = layer.weight
    receptive = weight[0][0].numel() if weight.ndim > 2 else 1
    return math.sqrt(6 / ((weight.shape[0] + weight.shape[1]) * receptive))


def test_weights_are_glorot_uniform_and_biases_zero() -> None:
    torch.manual_seed(0)
    model = FaceVAE(FaceVAEConfig(image_size=144, width=1.0, latent_dim=512))
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert len(layers) == 11 + 3 + 2 * 15
    for layer in layers:
        limit = _glorot_limit(layer)
        largest = layer.weight.abs().max().item()
        assert largest <= limit
        if layer.weight.numel() >= 10_000:
            # torch's default bound, 1/sqrt(fan_in), is well under Glorot's for these layers.
            assert largest > 0.99 * limit, layer
        if layer.bias is not None:
            assert torch.count_nonzero(layer.bias) == 0, layer


@pytest.mark.parametrize("size", [1, 2, 4, 9])
def test_same_padding_is_the_adjoint_of_a_tf_same_conv(size: int) -> None:
    # TF's conv2d_transpose is the gradient of conv2d. A 'same' stride-2 3x3 conv of a 2n input pads
    # max((n - 1) * 2 + 3 - 2n, 0) = 1 in total, floor(1 / 2) = 0 before and 1 after.
    torch.manual_seed(0)
    layer = KerasConvTranspose2d(3, 5, "same")
    g = torch.randn(2, 3, size, size)
    x = torch.zeros(2, 5, 2 * size, 2 * size, requires_grad=True)
    y = F.conv2d(F.pad(x, (0, 1, 0, 1)), layer.weight, stride=2)
    (grad,) = torch.autograd.grad((y * g).sum(), x)
    assert torch.allclose(layer(g), grad, atol=1e-5)


def test_valid_padding_is_the_adjoint_of_an_unpadded_conv() -> None:
    torch.manual_seed(0)
    layer = KerasConvTranspose2d(3, 5, "valid")
    g = torch.randn(2, 3, 4, 4)
    x = torch.zeros(2, 5, 9, 9, requires_grad=True)
    (grad,) = torch.autograd.grad((F.conv2d(x, layer.weight, stride=2) * g).sum(), x)
    assert torch.allclose(layer(g), grad, atol=1e-5)


def test_unknown_padding_is_rejected() -> None:
    with pytest.raises(ValueError, match="padding"):
        KerasConvTranspose2d(3, 5, "full")
