"""The failpoint registry the reliability and cluster tests drive (`study/training/faults.py`)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from study.training import faults


def _rules(monkeypatch, rules):
    monkeypatch.setenv(faults.ENV, json.dumps(rules))


def test_wait_blocks_until_the_gate_file_exists(monkeypatch, tmp_path):
    gate = tmp_path / "gate"
    _rules(monkeypatch, [{"point": "epoch_start", "phase": "tune", "action": "wait", "path": str(gate)}])
    faults.set_context(phase="tune", hypothesis="l2/mask", index=0)
    opener = threading.Timer(0.6, gate.touch)
    opener.start()
    began = time.monotonic()
    assert faults.fire("epoch_start", epoch=1) == "wait"
    assert time.monotonic() - began >= 0.5
    opener.join()


def test_wait_gives_up_after_its_timeout_and_only_matching_trials_wait(monkeypatch, tmp_path):
    _rules(monkeypatch, [{"point": "epoch_start", "phase": "tune", "action": "wait", "path": str(tmp_path / "never"),
                          "seconds": 0.3}])
    faults.set_context(phase="final", hypothesis="l2/mask", seed=1)
    began = time.monotonic()
    assert faults.fire("epoch_start", epoch=1) is None
    assert time.monotonic() - began < 0.2
    faults.set_context(phase="tune", hypothesis="l2/mask", index=0)
    began = time.monotonic()
    assert faults.fire("epoch_start", epoch=1) == "wait"
    assert 0.3 <= time.monotonic() - began < 2.0


def test_an_unknown_action_is_refused_by_name(monkeypatch):
    _rules(monkeypatch, [{"point": "epoch_start", "action": "explode"}])
    with pytest.raises(ValueError, match="explode"):
        faults.fire("epoch_start", epoch=1)
