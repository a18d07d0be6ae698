"""Study configuration: presets load, every bad field is named at once, overrides work."""
from __future__ import annotations


import pytest

from study.config.train import TrainConfig
from study.config.base import validated
from study.errors import ConfigError
from study.config.loading import PRESETS, apply_overrides, config_field_docs, load_study_config
from study.config.study import StudyConfig


@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_preset_loads(preset):
    config = load_study_config(preset, check_data=False)
    assert len(config.hypotheses()) == 10
    assert {h.name for h in config.hypotheses()} >= {"ssim+l2/mask", "l1/nomask"}


def test_paper_preset_has_the_papers_settings():
    config = load_study_config("paper", check_data=False)
    assert config.search.trials_per_hypothesis == 16 and config.final.seeds == 5 and config.final.epochs == 100
    assert config.scheduler.kind == "asha" and config.train.model.width == 1.0 and config.train.model.latent_dim == 512
    weights = config.train.loss_weights
    assert (weights.ssim, weights.l1, weights.l2) == (1.0, 4.0, 100.0)
    assert config.train.batch_size == 32 and config.train.grad_clip_norm == 1e-3
    train = config.train
    assert (train.grad_clip_scope, train.adam_eps, train.batch_norm_decay) == ("per_parameter", 1e-7, 0.99)
    assert (train.max_train_batches, train.max_val_batches, train.lr) == (4000, 700, 1e-4)  # the authors' epoch
    assert (config.final.champion.view, config.final.champion.region) == ("decoder", "face")


def test_all_problems_are_reported_together_naming_each_field(tmp_path):
    bad = [
        "grid.losses=[l1, l3]", "search.kl_weight.low=0.1", "search.kl_weight.high=0.01",
        "search.trials_per_hypothesis=0", "resources.gpus_per_trial=1.5", "train.epochs=-1",
        f"data.path={tmp_path / 'missing'}", "data.synthesize_if_missing=null", "nonsense.field=1",
    ]
    with pytest.raises(ConfigError) as caught:
        load_study_config("smoke", overrides=bad)
    text = str(caught.value)
    for field in ("grid", "l3", "search.kl_weight", "search.trials_per_hypothesis", "resources", "train.epochs",
                  "nonsense"):
        assert field in text, (field, text)


def test_unreadable_dataset_is_named(tmp_path):
    with pytest.raises(ConfigError, match="data.path"):
        load_study_config("smoke", overrides=[f"data.path={tmp_path}/nope", "data.synthesize_if_missing=null"])


def test_overrides_parse_yaml_values():
    values = apply_overrides({"search": {"lr": {"low": 1}}}, ["search.lr.high=0.5", "grid.masks=[true]"])
    assert values == {"search": {"lr": {"low": 1, "high": 0.5}}, "grid": {"masks": [True]}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["no-equals-sign"])


def test_config_file_and_subset_grid(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: mine\ndata: {path: /x}\ngrid: {losses: [l1, ssim+l2], masks: [true]}\n")
    config = load_study_config(None, path, check_data=False)
    assert [h.name for h in config.hypotheses()] == ["l1/mask", "ssim+l2/mask"]
    assert config.search.trials_per_hypothesis == 16  # schema default, not the smoke preset's
    with pytest.raises(ConfigError, match="not valid YAML"):
        (tmp_path / "bad.yaml").write_text("a: [")
        load_study_config(None, tmp_path / "bad.yaml")


def test_every_field_is_documented():
    undocumented = [field for field, doc in config_field_docs() if not doc]
    assert undocumented == []


def test_train_config_names_every_bad_field():
    with pytest.raises(ConfigError) as caught:
        validated(TrainConfig, {"hypothesis": "l4/mask", "epochs": 0, "lr": -1, "model": {"width": 0}})
    text = str(caught.value)
    for field in ("hypothesis", "epochs", "lr", "model.width"):
        assert field in text


def test_study_config_builds_trial_configs():
    config = StudyConfig.model_validate({"data": {"path": "/x"}})
    trial = config.trial_config("ssim/nomask", kl_weight=0.01, lr=1e-4, seed=3)
    assert (trial.hypothesis, trial.kl_weight, trial.lr, trial.seed) == ("ssim/nomask", 0.01, 1e-4, 3)
    assert trial.reference_kl_weight == config.train.reference_kl_weight
    assert trial.fast_path and not trial.compile
    tuned = StudyConfig.model_validate({"data": {"path": "/x"}, "train": {"fast_path": False, "compile": True}})
    trial = tuned.trial_config("l1/mask", kl_weight=0.01, lr=1e-4, seed=0)
    assert not trial.fast_path and trial.compile


def test_every_training_field_reaches_the_trials():
    """One training config: any field set on the study's `train` arrives in each trial unchanged,
    except the four a trial fills in itself."""
    from study.config.train import TrainConfig

    own = {"hypothesis", "kl_weight", "lr", "seed"}
    changed = {"epochs": 7, "batch_size": 8, "reference_kl_weight": 0.5, "grad_clip_norm": None,
               "grad_clip_scope": "global", "adam_eps": 1e-8, "batch_norm_decay": 0.9, "model": {"width": 0.5, "latent_dim": 32},
               "loss_weights": {"ssim": 2.0, "l1": 1.0, "l2": 10.0, "mask": 0.5}, "device": "cpu", "fast_path": False,
               "compile": True, "max_train_batches": 3, "max_val_batches": 2, "keep_checkpoints": 3, "progress": True,
               "sample_faces": 0}
    assert set(TrainConfig.model_fields) == own | set(changed), "a new TrainConfig field needs a value here"
    study = StudyConfig.model_validate({"data": {"path": "/x"}, "train": changed})
    trial = study.trial_config("l2/mask", kl_weight=0.02, lr=3e-4, seed=5)
    dumped = trial.model_dump()
    for field, value in changed.items():
        assert dumped[field] == value, field
    assert (trial.hypothesis, trial.kl_weight, trial.lr, trial.seed) == ("l2/mask", 0.02, 3e-4, 5)
