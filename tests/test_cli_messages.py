"""What a new user reads when something is off: one line that says what to do, and exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _error(argv, capsys) -> str:
    assert main(argv) == 2, argv
    return capsys.readouterr().err.strip()


def test_an_unknown_set_field_suggests_the_closest(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _error(["study", "run", "--set", "train.epoch=3"], capsys)
    assert err == "maskvae study: error: invalid study config: train.epoch: unknown field (did you mean train.epochs?)"
    err = _error(["study", "run", "--set", "trian.epochs=3", "--set", "search.lr.hihg=1", "--set", "zzz=1"], capsys)
    assert "trian: unknown field (did you mean train.epochs?)" in err
    assert "search.lr.hihg: unknown field (did you mean search.lr.high?)" in err
    assert "zzz: unknown field" in err and "zzz: unknown field (" not in err
    assert not any(tmp_path.iterdir())


def test_the_paper_preset_without_its_data_points_to_data_prepare(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _error(["study", "run", "--preset", "paper"], capsys)
    assert len(err.splitlines()) == 1
    assert "data.path" in err and "data/celeba-144" in err and "maskvae data prepare data/celeba-144" in err
    assert not any(tmp_path.iterdir())


def test_data_synth_into_a_used_directory_names_the_flag(tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["data", "synth", str(out), "--count", "30", "--size", "16", "--no-progress"]) == 0
    err = _error(["data", "synth", str(out), "--count", "30", "--size", "16", "--no-progress"], capsys)
    assert len(err.splitlines()) == 1 and "pass --overwrite" in err and "overwrite=True" not in err
    assert main(["data", "synth", str(out), "--count", "30", "--size", "16", "--no-progress", "--overwrite"]) == 0


def test_data_verify_names_every_bad_shard(tmp_path, capsys):
    from data.prepare import synthesize

    out = tmp_path / "faces"
    synthesize(out, 40, 16, seed=1, shard_rows=10, progress=False)
    assert main(["data", "verify", str(out)]) == 0
    (out / "val-00000.arrow").unlink()
    for name in ("train-00001.arrow", "test-00000.arrow"):
        content = bytearray((out / name).read_bytes())
        content[len(content) // 2] ^= 0xFF
        (out / name).write_bytes(bytes(content))
    err = _error(["data", "verify", str(out)], capsys)
    assert err.splitlines()[0] == "maskvae data: error: 3 shards are missing or changed"
    for name in ("train-00001.arrow", "val-00000.arrow", "test-00000.arrow"):
        assert sum(name in line for line in err.splitlines()) == 1, name


def test_a_single_problem_is_one_line(tmp_path, capsys):
    """Errors that carry one problem print as `title: problem`, not as a title over a one-item list."""
    err = _error(["study", "status", str(tmp_path)], capsys)
    assert err == f"maskvae study: error: study not found: {tmp_path}: not a maskvae study directory (no study.json)"


@pytest.fixture
def study_dir(tmp_path) -> Path:
    from study.config.loading import load_study_config
    from study.driver.state import StudyState

    config = load_study_config("smoke", check_data=False)
    StudyState(study_id="s", name="smoke", created="now", config=config.model_dump(mode="json")).save(tmp_path)
    return tmp_path


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], env=env, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_status_into_a_closed_pipe_ends_quietly(study_dir):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written: every write fails
    process = _cli("study", "status", str(study_dir), stdout=write_end)
    os.close(write_end)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


def test_status_piped_into_head(study_dir):
    result = subprocess.run(f"{sys.executable} -m study.cli study status {study_dir} | head -1", shell=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("study smoke (s)") and len(result.stdout.splitlines()) == 1
    assert result.stderr == ""


def test_missing_lpips_weights_is_a_one_line_note(tmp_path, monkeypatch, capsys):
    from models.perceptual import lpips_available, lpips_weights_path
    from study.config.loading import load_study_config
    from study.driver.preflight import preflight

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert not lpips_available()
    config = load_study_config("smoke", overrides=[f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                               check_data=False)
    assert preflight(config, tmp_path / "study").lpips_available is False
    notes = [line for line in capsys.readouterr().out.splitlines() if "LPIPS" in line]
    assert len(notes) == 1 and str(lpips_weights_path()) in notes[0] and len(notes[0]) - len(str(lpips_weights_path())) < 100, notes
