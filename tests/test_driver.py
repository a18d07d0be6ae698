"""The driver's views of a study (progress line, status, ledger) honour the objective's mode."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from study.config.study import StudyConfig
from study.driver.layout import StudyLayout
from study.driver.ledger import TrialLedger
from study.driver.progress import ProgressPrinter
from study.driver.state import StudyState
from study.driver.status import print_status, status_summary
from study.search.trials import TrialRecord


def _record(trial_id, value, status="TERMINATED", hypothesis="l1/mask", error=None):
    return TrialRecord(phase="tune", trial_id=trial_id, config={"hypothesis": hypothesis, "kl_weight": 1e-3,
                                                                 "lr": 1e-3, "index": 0},
                       status=status, metrics={"val_objective": value, "epoch": 2}, error=error)


@pytest.mark.parametrize("mode, best", [("min", "0.2000"), ("max", "0.5000")])
def test_the_progress_line_keeps_the_best_by_the_objectives_mode(capsys, mode, best):
    clock = iter([0.0, 10.0, 20.0, 30.0])
    printer = ProgressPrinter({"tune:l1/mask": 3}, "val_objective", mode, now=lambda: next(clock))
    printer.trial_started(_record("a", None, "RUNNING"))
    for trial_id, value in (("a", 0.2), ("b", 0.5)):
        printer.trial_finished(_record(trial_id, value))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"best {best}" in last and "2/3" in last
    assert "elapsed" in last and "ETA" in last


def test_a_failed_trial_is_never_the_best_on_the_progress_line(capsys):
    printer = ProgressPrinter({"tune:l1/mask": 2}, "val_objective", "max")
    printer.trial_finished(_record("a", 0.3))
    printer.trial_finished(_record("b", 9.0, error="loss became NaN"))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "FAILED: loss became NaN" in last and "best 0.3000" in last


def _study(tmp_path, mode: str) -> StudyLayout:
    config = StudyConfig.model_validate({"data": {"path": "/nowhere"}, "objective": {"mode": mode},
                                         "grid": {"losses": ["l1"], "masks": [True]}})
    StudyState(study_id="s1", name="modes", created="now", config=config.model_dump(mode="json")).save(tmp_path)
    return StudyLayout(tmp_path)


@pytest.mark.parametrize("mode, best", [("min", 0.2), ("max", 0.5)])
def test_status_reports_the_best_by_the_objectives_mode(tmp_path, mode, best):
    layout = _study(tmp_path, mode)
    ledger = TrialLedger(layout.ledger_file, "val_objective")
    for record in (_record("a", 0.2), _record("b", 0.5), _record("c", 9.0, status="ERROR", error="boom")):
        ledger.trial_finished(record)
    ledger.write(force=True)
    cell = status_summary(tmp_path)["phases"]["tune"]["l1/mask"]
    assert cell["best"] == best
    assert dict(cell["counts"]) == {"finished": 2, "failed": 1}


def test_the_ledger_is_written_at_most_once_a_second_and_never_more_than_a_second_behind(tmp_path):
    import time

    path = tmp_path / "trials.json"
    ledger = TrialLedger(path, "val_objective")
    began = time.monotonic()
    for name in "abc":
        ledger.trial_finished(_record(name, 0.1))
    assert set(json.loads(path.read_text())["trials"]) == {"tune:a"}, "the first event is written at once, the rest wait"
    while time.monotonic() - began < 3 and len(json.loads(path.read_text())["trials"]) < 3:
        time.sleep(0.05)
    assert len(json.loads(path.read_text())["trials"]) == 3, "a trailing write catches up without another event"
    assert 0.8 <= time.monotonic() - began < 2.0


def test_status_calls_trials_of_a_dead_driver_interrupted(tmp_path, capsys):
    layout = _study(tmp_path, "min")
    TrialLedger(layout.ledger_file, "val_objective").trial_started(_record("a", None, "RUNNING"))
    payload = json.loads(layout.ledger_file.read_text())
    payload["driver"]["pid"] = 2 ** 22 + 12345  # no such process
    layout.ledger_file.write_text(json.dumps(payload))
    print_status(tmp_path)
    out = capsys.readouterr().out
    assert "interrupted" in out and "1 interrupted" in out and "resume with: maskvae study resume" in out


@pytest.mark.parametrize("mode, chosen", [("min", "a"), ("max", "b")])
def test_the_reports_best_trial_honours_the_mode(mode, chosen):
    from study.analysis.figures_ranks import best_trial

    trials = pd.DataFrame({"hypothesis": ["l1/mask"] * 3, "trial_id": ["a", "b", "c"], "kl_weight": [1e-3] * 3,
                           "lr": [1e-3] * 3, "objective": [0.2, 0.5, float("nan")],
                           "status": ["TERMINATED", "TERMINATED", "FAILED"]})
    assert best_trial(trials, mode)["trial_id"] == chosen
