"""The command line: exit 0 on success, 2 on bad input naming the field or file."""
from __future__ import annotations

import subprocess
import sys

import pytest

from study.cli import main


def test_help_on_every_command(capsys):
    for argv in (["--help"], ["data", "--help"], ["data", "synth", "--help"], ["data", "prepare", "--help"],
                 ["train", "--help"], ["study", "run", "--help"], ["study", "resume", "--help"], ["predict", "--help"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 0, argv
        assert "usage:" in capsys.readouterr().out


def test_synth_then_train_then_resume(tmp_path, capsys):
    data = tmp_path / "faces"
    assert main(["data", "synth", str(data), "--count", "120", "--size", "32", "--seed", "3", "--no-progress"]) == 0
    assert (data / "manifest.json").exists()
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--hypothesis", "ssim+l1/mask", "--epochs", "1", "--out", str(run),
            "--width", "0.125", "--latent-dim", "8", "--batch-size", "16", "--no-progress"]
    assert main(args) == 0
    assert (run / "checkpoints" / "epoch-00001" / "checkpoint.pt").exists()
    assert (run / "model" / "model.json").exists()
    resumed = args[:args.index("--epochs") + 1] + ["2"] + args[args.index("--epochs") + 2:]
    assert main(resumed + ["--resume", str(run / "checkpoints" / "epoch-00001")]) == 0
    out = capsys.readouterr().out
    assert "epoch 2:" in out and "epoch 1:" in out
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_bad_inputs_exit_2_naming_the_problem(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--hypothesis", "l1/mask", "--epochs", "1",
                 "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    data = tmp_path / "faces"
    main(["data", "synth", str(data), "--count", "60", "--size", "32", "--no-progress"])
    assert main(["train", "--data", str(data), "--hypothesis", "l9/mask", "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    assert "hypothesis" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--hypothesis", "l1/mask", "--epochs", "1", "--out", str(tmp_path / "o"),
                 "--resume", str(tmp_path / "missing-ckpt")]) == 2
    assert "missing-ckpt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["data", "synth", str(tmp_path / "x"), "--count", "0"])
    assert caught.value.code == 2
    assert main(["study", "run", "--set", "search.trials_per_hypothesis=0", "--set", "grid.losses=[l7]",
                 "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert "search.trials_per_hypothesis" in err and "l7" in err
    assert not (tmp_path / "study").exists()


def test_console_script_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "study.cli", "study", "status", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "not a maskvae study directory" in result.stderr
