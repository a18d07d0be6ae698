"""Bad input never starts work (6), a changed shard is named before any trial (11), unwritable
storage and a full disk give clear errors with earlier checkpoints intact (12), unsafe files (8)."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.cli import main
from study.errors import ConfigError
from study.config.study import StudyConfig
from study.config.loading import load_study_config


def _nothing_created(root: Path) -> bool:
    return not any(root.iterdir())


def test_invalid_config_lists_every_field_exits_2_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["study", "run", "--set", "search.lr.low=1", "--set", "search.lr.high=0.1",
                 "--set", "resources.gpus_per_trial=2.5", "--set", "train.batch_size=0", "--set", "grid.losses=[l5]"])
    assert code == 2
    err = capsys.readouterr().err
    for field in ("search.lr", "resources", "train.batch_size", "l5"):
        assert field in err
    assert _nothing_created(tmp_path)  # no runs/, no mlflow.db, no Ray session in the working dir


def test_bad_cli_arguments_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for argv in (["study", "run", "--preset", "huge"], ["study", "run", "--set", "novalue"],
                 ["study", "run", "--config", str(tmp_path / "missing.yaml")], ["train", "--epochs", "x"]):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        assert code == 2, argv
    assert _nothing_created(tmp_path)


_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.text(max_size=6), max_size=3))
_paths = st.sampled_from(["train.epochs", "train.batch_size", "search.trials_per_hypothesis", "search.lr.low",
                          "search.kl_weight.high", "resources.gpus_per_trial", "resources.cpus_per_trial",
                          "grid.losses", "grid.masks", "final.seeds", "scheduler.kind", "scheduler.reduction_factor",
                          "objective.metric", "name", "train.model.width", "mlflow.preflight_timeout_s", "bogus.key"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_paths, _values, max_size=4))
def test_property_any_override_either_validates_or_is_a_config_error_naming_fields(overrides):
    import yaml

    args = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in overrides.items()]
    try:
        config = load_study_config("smoke", overrides=args, check_data=False)
    except ConfigError as error:
        assert error.problems and all(":" in problem for problem in error.problems)
        return
    assert isinstance(config, StudyConfig)
    assert config.search.lr.low < config.search.lr.high and config.train.epochs >= 1
    assert config.resources.gpus_per_trial <= 1 or float(config.resources.gpus_per_trial).is_integer()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(partition=st.lists(st.tuples(st.sampled_from(["000001.jpg", "000002.jpg", "000003.jpg", "000009.jpg", "x"]),
                                    st.sampled_from(["0", "1", "2", "3", "-1", "a", ""])), max_size=6),
       corrupt=st.sets(st.sampled_from(["000001", "000002", "000003"]), max_size=2),
       drop_label=st.sets(st.sampled_from(["000001", "000002", "000003"]), max_size=2))
def test_property_prepare_either_succeeds_or_names_a_file_and_leaves_nothing(tmp_path_factory, partition, corrupt, drop_label):
    from data.errors import DatasetError
    from data.prepare import prepare
    from tests.helpers.fake_layouts import write_celeba_layout

    root = tmp_path_factory.mktemp("prep")
    write_celeba_layout(root, count=3, size=32, seed=1)
    (root / "list_eval_partition.txt").write_text("".join(f"{name} {split}\n" for name, split in partition))
    for stem in corrupt:
        (root / "img_align_celeba" / f"{stem}.jpg").write_bytes(b"not a jpeg")
    for stem in drop_label:
        (root / "labels" / f"{stem}.png").unlink()
    out = root / "prepared"
    try:
        manifest = prepare(out, "celeba", root / "img_align_celeba", root / "labels", root / "list_eval_partition.txt",
                           size=32, progress=False)
    except DatasetError as error:
        assert not out.exists()
        text = str(error)
        assert any(token in text for token in (".jpg", ".png", "list_eval_partition", "split", "partition", "empty"))
        return
    assert out.exists() and sum(manifest.counts.values()) >= 1


def test_a_changed_shard_is_named_before_any_trial(tmp_path, synthetic_dataset, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    shard = sorted(data.glob("train-*.arrow"))[0]
    content = bytearray(shard.read_bytes())
    content[-100] ^= 0xFF
    shard.write_bytes(bytes(content))
    monkeypatch.chdir(tmp_path)
    code = main(["study", "run", "--set", f"data.path={data}", "--set", "data.synthesize_if_missing=null",
                 "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(tmp_path / "study")])
    assert code == 2
    assert shard.name in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_unwritable_storage_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["study", "run", "--out", str(blocker / "study"), "--set", "ray.storage_path=" + str(blocker / "ray"),
                 "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "ray.storage_path" in err and "not a directory" in err


def test_a_full_disk_during_checkpointing_is_clear_and_keeps_earlier_checkpoints(tmp_path):
    """The write runs in a process whose file-size limit stands in for a full disk (EFBIG, a real OS error)."""
    script = textwrap.dedent(f"""
        import resource, signal, sys, torch
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from models.vae import FaceVAE, FaceVAEConfig
        from study.training.checkpoint import CheckpointError, save_checkpoint
        model = FaceVAE(FaceVAEConfig(image_size=32, width=0.125, latent_dim=8))
        optimizer = torch.optim.Adam(model.parameters())
        save_checkpoint({str(tmp_path / 'epoch-00001')!r}, model=model, optimizer=optimizer, epoch=1, config_json="{{}}")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        try:
            save_checkpoint({str(tmp_path / 'epoch-00002')!r}, model=model, optimizer=optimizer, epoch=2, config_json="{{}}")
        except CheckpointError as error:
            print("CLEAR:", error)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "epoch-00002" in result.stdout and "disk full" in result.stdout
    from study.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "epoch-00001")["epoch"] == 1
    assert not list((tmp_path / "epoch-00002").glob("*"))  # no half-written file left behind


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_malicious_checkpoint_is_refused_by_the_cli_and_never_runs(tmp_path, synthetic_dataset, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil"
    bad.mkdir()
    torch.save({"format": 1, "model": _Payload()}, bad / "checkpoint.pt", pickle_module=pickle)
    code = main(["train", "--data", str(synthetic_dataset), "--hypothesis", "l1/mask", "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--resume", str(bad), "--width", "0.125", "--no-progress"])
    assert code == 2
    assert "refused" in capsys.readouterr().err
    time.sleep(0.1)
    assert not (tmp_path / "pwned").exists()
