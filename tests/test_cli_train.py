"""`maskvae train --out DIR`: a used run directory is refused unless --resume (continue that run) or
--overwrite (a new run replaces it whole); nothing of one run ever ends up in another."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from study.cli import main

TINY = ["--width", "0.125", "--latent-dim", "8", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from data.prepare import synthesize

    path = tmp_path_factory.mktemp("faces") / "faces"
    synthesize(path, count=60, size=32, seed=2, progress=False)
    return path


def _train(faces: Path, out: Path, hypothesis: str, epochs: int, *extra: str) -> int:
    return main(["train", "--data", str(faces), "--hypothesis", hypothesis, "--epochs", str(epochs),
                 "--out", str(out), *TINY, *extra])


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _epochs(run: Path) -> list[int]:
    return [int(json.loads(line)["epoch"]) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_a_used_out_is_refused_in_one_line_and_left_untouched(faces, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(faces, run, "l1/mask", 1) == 0
    before = _snapshot(run)
    capsys.readouterr()
    for hypothesis in ("l1/mask", "l2/nomask"):
        assert _train(faces, run, hypothesis, 2) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--out {run}" in err and "--resume" in err and "--overwrite" in err
        assert _snapshot(run) == before
    other = tmp_path / "other"
    assert _train(faces, other, "l1/mask", 1) == 0
    # Continuing another run's checkpoint into this one would mix the two.
    assert _train(faces, run, "l1/mask", 2, "--resume", str(other)) == 2
    assert "not one of its checkpoints" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_overwrite_replaces_the_whole_run(faces, tmp_path):
    run = tmp_path / "run"
    assert _train(faces, run, "l1/mask", 3) == 0
    old_weights = (run / "model" / "model.pt").read_bytes()
    (run / "notes.txt").write_text("mine")  # not part of a run: stays
    assert _train(faces, run, "l2/nomask", 1, "--overwrite") == 0
    assert _epochs(run) == [1]
    assert _checkpoints(run) == ["epoch-00001"]
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["train_config"]["hypothesis"] == "l2/nomask" and meta["config"]["use_mask"] is False
    assert (run / "model" / "model.pt").read_bytes() != old_weights
    assert json.loads((run / "train_config.json").read_text())["hypothesis"] == "l2/nomask"
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.jsonl", "model", "notes.txt",
                                                     "train_config.json"]


def test_an_overwrite_that_does_not_finish_leaves_the_old_run(faces, tmp_path, monkeypatch):
    import study.training.trainer as trainer

    run = tmp_path / "run"
    assert _train(faces, run, "l1/mask", 1) == 0
    before = _snapshot(run)
    real_train = trainer.train

    def interrupted_after_one_epoch(config, data, report, **kwargs):
        def then_stop(metrics, checkpoint_dir):
            report(metrics, checkpoint_dir)
            raise KeyboardInterrupt

        return real_train(config, data, then_stop, **kwargs)

    monkeypatch.setattr(trainer, "train", interrupted_after_one_epoch)
    assert _train(faces, run, "l2/nomask", 3, "--overwrite") == 130
    assert _snapshot(run) == before
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.jsonl", "model", "train_config.json"]


def test_resume_continues_the_run_and_drops_what_it_retrains(faces, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(faces, run, "ssim/mask", 3) == 0
    assert _checkpoints(run) == ["epoch-00002", "epoch-00003"]
    # From an earlier epoch: the later checkpoint and metric lines belong to the abandoned path.
    assert _train(faces, run, "ssim/mask", 3, "--resume", str(run / "checkpoints" / "epoch-00002")) == 0
    assert _epochs(run) == [1, 2, 3]
    assert "dropped" in capsys.readouterr().out
    # Without a value: the --out run's own newest checkpoint.
    assert _train(faces, run, "ssim/mask", 4, "--resume") == 0
    assert _epochs(run) == [1, 2, 3, 4]
    assert _checkpoints(run) == ["epoch-00003", "epoch-00004"]
    meta = json.loads((run / "model" / "model.json").read_text())
    assert 1 <= meta["best_epoch"] <= 4 and meta["train_config"]["epochs"] == 4
    # Another hypothesis cannot continue it, and says so before anything is written.
    before = _snapshot(run)
    assert _train(faces, run, "l1/mask", 5, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ssim/mask" in err and "l1/mask" in err
    assert _snapshot(run) == before
    assert _train(faces, run, "ssim/mask", 5, "--resume", str(run / "checkpoints" / "epoch-00004"), "--overwrite") == 2
    assert _snapshot(run) == before


def test_every_train_option_has_help_and_a_default(capsys):
    import argparse

    from study.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    train = commands.choices["train"]
    options = [a for a in train._actions if a.option_strings and a.dest != "help"]
    assert {"--width", "--latent-dim", "--batch-size", "--lr", "--kl-weight", "--seed", "--device", "--resume",
            "--overwrite", "--no-progress"} <= {a.option_strings[0] for a in options}
    for action in options:
        assert action.help, action.option_strings
        if not action.required:
            assert "(default: " in action.help, action.option_strings
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "(default: 0.0001)" in text and "(default: 512)" in text and "(default: auto)" in text


def test_trimming_for_a_resume_drops_later_epochs_and_a_line_cut_short(tmp_path):
    from study.cli import run_dir

    for epoch in (1, 2, 3):
        (tmp_path / "checkpoints" / f"epoch-{epoch:05d}").mkdir(parents=True)
    lines = [json.dumps({"epoch": e, "val_objective": 0.5}) for e in (1, 2, 3)] + ['{"epoch": 4, "val_obj']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    dropped = run_dir.trim_after(tmp_path, 2)
    assert [d.name for d in dropped] == ["epoch-00003"]
    assert _checkpoints(tmp_path) == ["epoch-00001", "epoch-00002"]
    assert _epochs(tmp_path) == [1, 2]
