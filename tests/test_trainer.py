"""train(config, data, report): checkpoints, resume, NaN guard, learning."""
from __future__ import annotations

import json

import pytest
import torch

from study.training.checkpoint import checkpoint_dirs, load_checkpoint
from study.training.trainer import NonFiniteLossError, build_model, train
from tests.conftest import tiny_train_config


def test_reports_every_epoch_with_a_checkpoint_and_named_terms(face_data, tmp_path):
    reports = []
    config = tiny_train_config(epochs=2)
    metrics = train(config, face_data, lambda m, d: reports.append((m, d)), workdir=tmp_path)
    assert [int(m["epoch"]) for m, _ in reports] == [1, 2]
    for name in ("train_total", "train_reconstruction", "train_kl", "train_mask", "val_total", "val_reconstruction",
                 "val_kl", "val_mask", "val_objective", "val_one_minus_ssim", "val_l1_x10", "val_l2_x10"):
        assert name in metrics and metrics[name] == metrics[name], name
    assert metrics["train_mask"] > 0  # the mask decoder is trained in a mask hypothesis
    payload = load_checkpoint(reports[-1][1])
    assert payload["epoch"] == 2 and json.loads(payload["config"])["hypothesis"] == "ssim+l2/mask"
    assert (reports[-1][1] / "samples.png").stat().st_size > 0


def test_nomask_hypothesis_has_no_mask_loss(face_data, tmp_path):
    metrics = train(tiny_train_config(hypothesis="l1/nomask", epochs=1), face_data, workdir=tmp_path)
    assert metrics["train_mask"] == 0 and metrics["val_mask"] == 0


def test_keeps_only_the_newest_checkpoints(face_data, tmp_path):
    train(tiny_train_config(epochs=3, keep_checkpoints=2), face_data, workdir=tmp_path)
    assert [d.name for d in checkpoint_dirs(tmp_path / "checkpoints")] == ["epoch-00002", "epoch-00003"]


def test_resume_at_epoch_k_matches_an_uninterrupted_run(face_data, tmp_path):
    config = tiny_train_config(epochs=3)
    full = train(config, face_data, workdir=tmp_path / "full")
    train(tiny_train_config(epochs=1), face_data, workdir=tmp_path / "part")
    resumed = train(config, face_data, checkpoint=tmp_path / "part" / "checkpoints" / "epoch-00001",
                    workdir=tmp_path / "resumed")
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "epoch-00003")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "epoch-00003")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["val_objective"] == pytest.approx(full["val_objective"], rel=0, abs=0)


def test_non_finite_loss_stops_with_that_reason(face_data, tmp_path):
    # A huge unclipped learning rate blows the log-scale up: exp() overflows and the KL goes non-finite.
    config = tiny_train_config(lr=0.9, grad_clip_norm=None, kl_weight=1.0, epochs=5)
    reports = []
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        train(config, face_data, lambda m, d: reports.append(m), workdir=tmp_path)
    assert all(value == value for m in reports for value in m.values())  # nothing NaN was ever reported


def test_learns_on_synthetic_faces(face_data, tmp_path):
    """A learning test: a few hundred steps must clearly lower the validation loss, mask and no-mask."""
    for hypothesis in ("l2/mask", "l2/nomask"):
        config = tiny_train_config(hypothesis=hypothesis, epochs=1, max_train_batches=1, max_val_batches=None,
                                   model={"width": 0.25, "latent_dim": 32}, lr=2e-3, batch_size=16, sample_faces=0,
                                   batch_norm_decay=0.9)
        before = train(config, face_data, workdir=tmp_path / hypothesis.replace("/", "-") / "a")
        trained = train(config.model_copy(update={"epochs": 12, "max_train_batches": 25}), face_data,
                        workdir=tmp_path / hypothesis.replace("/", "-") / "b")
        assert trained["val_reconstruction"] < 0.7 * before["val_reconstruction"], (hypothesis, before, trained)


def test_weights_change_after_one_step(face_data, tmp_path):
    config = tiny_train_config(epochs=1, max_train_batches=1)
    torch.manual_seed(config.seed)
    initial = {k: v.clone() for k, v in build_model(config, 32).state_dict().items()}
    train(config, face_data, workdir=tmp_path)
    after = load_checkpoint(tmp_path / "checkpoints" / "epoch-00001")["model"]
    changed = [k for k in initial if initial[k].dtype.is_floating_point and not torch.equal(initial[k], after[k])]
    assert any("encoder" in k for k in changed) and any("decoder" in k for k in changed)


def test_per_parameter_clipping_is_keras_clipnorm_and_differs_from_global():
    from study.training.trainer import clip_gradients

    def params():
        big, small = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
        big.grad, small.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])
        return big, small

    big, small = params()
    clip_gradients([big, small], 1.0, "per_parameter")
    # Keras clip_by_norm: each gradient alone, g * c / max(|g|, c): the small one is left as it is.
    assert torch.allclose(big.grad, torch.tensor([0.6, 0.8])) and torch.allclose(small.grad, torch.tensor([0.3, 0.4]))
    big, small = params()
    clip_gradients([big, small], 1.0, "global")
    scale = 1.0 / (25.25 ** 0.5)
    assert torch.allclose(big.grad, torch.tensor([3.0, 4.0]) * scale, atol=1e-6)
    assert torch.allclose(small.grad, torch.tensor([0.3, 0.4]) * scale, atol=1e-6)


def test_batch_norm_decay_is_a_training_setting_with_the_keras_default(face_data):
    config = tiny_train_config()
    assert config.batch_norm_decay == 0.99
    norms = [m for m in build_model(config, face_data.image_size).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(abs(m.momentum - 0.01) < 1e-12 and m.eps == 1e-3 for m in norms)
    fast = build_model(config.model_copy(update={"batch_norm_decay": 0.9}), face_data.image_size)
    assert all(abs(m.momentum - 0.1) < 1e-12 for m in fast.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_adam_epsilon_is_keras_default(face_data, tmp_path):
    config = tiny_train_config(epochs=1)
    assert config.adam_eps == 1e-7 and config.grad_clip_scope == "per_parameter"
    train(config, face_data, workdir=tmp_path)
    payload = load_checkpoint(checkpoint_dirs(tmp_path / "checkpoints")[-1])
    assert payload["optimizer"]["param_groups"][0]["eps"] == 1e-7


def test_the_best_validation_epoch_is_the_exported_model(face_data, tmp_path, monkeypatch):
    """Validation losses 3, 1, 2: epoch 2's weights are kept, exported and named, not epoch 3's."""
    from study.training import trainer
    from study.training.checkpoint import best_weights

    scripted = iter([3.0, 1.0, 2.0])
    real_validate = trainer.validate

    def scripted_validate(*args, **kwargs):
        terms = real_validate(*args, **kwargs)
        return {**terms, "total": next(scripted)}

    monkeypatch.setattr(trainer, "validate", scripted_validate)
    states = {}
    config = tiny_train_config(epochs=3, keep_checkpoints=3, sample_faces=0)

    def report(metrics, directory):
        states[int(metrics["epoch"])] = load_checkpoint(directory)["model"]

    metrics = train(config, face_data, report, workdir=tmp_path)
    assert metrics["best_epoch"] == 2.0
    weights, epoch = best_weights(load_checkpoint(checkpoint_dirs(tmp_path / "checkpoints")[-1]))
    assert epoch == 2
    assert all(torch.equal(weights[k], states[2][k]) for k in states[2])
    assert any(not torch.equal(weights[k], states[3][k]) for k in states[3] if states[3][k].is_floating_point())
