"""The benchmark code itself, at tiny sizes: each side does the work it claims, and the plumbing
(targets, table, JSON, CLI) reports what was measured."""
from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import BENCHMARKS
from benchmarks.common import NO_GPU, Row, Target, interleaved, ratio, skipped


# -- targets, rows, timing --------------------------------------------------------------------

def test_targets_compare_the_ratio_or_the_value():
    at_least = Target(">=", 20.0)
    assert at_least.met(Row("b", "m", "u", 100.0, 4.0, ratio=25.0)) is True
    assert at_least.met(Row("b", "m", "u", 100.0, 6.0, ratio=100 / 6)) is False
    at_most = Target("<=", 5.0, on="value")
    assert at_most.met(Row("b", "m", "ms", 4.9)) is True
    assert at_most.met(Row("b", "m", "ms", 5.1)) is False
    assert at_least.met(Row("b", "m", "u", None)) is None
    assert at_least.describe() == ">= 20x" and at_most.describe() == "<= 5"
    with pytest.raises(ValueError, match="op"):
        Target("==", 1.0)


def test_ratio_and_skipped_rows():
    assert ratio(10.0, 4.0) == 2.5
    assert ratio(None, 4.0) is None and ratio(1.0, 0.0) is None
    row = skipped("gpu", "fast path", "images/s", Target(">=", 2.5))
    assert row.met is None and row.value is None and row.note == NO_GPU
    assert row.to_json()["met"] is None and row.to_json()["target"] == ">= 2.5x"


def test_interleaved_alternates_the_sides():
    calls = []
    samples = interleaved({"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, 3)
    assert calls == ["a", "b"] * 3
    assert samples == {"a": [1.0] * 3, "b": [2.0] * 3}
    with pytest.raises(ValueError, match="repeats"):
        interleaved({"a": lambda: 1.0}, 0)


# -- table, JSON, command line ----------------------------------------------------------------

def test_markdown_table_has_one_line_per_row_and_marks_misses():
    from benchmarks.report import markdown

    rows = [Row("input", "shards", "images/s", 20000.0, 800.0, "folders", Target(">=", 20.0), 25.0),
            Row("tracking", "log_batch", "ms", 6.0, 70.0, "log_metric", Target("<=", 5.0, on="value"), 6 / 70),
            skipped("trainer_gpu", "fast path", "images/s", Target(">=", 2.5))]
    lines = markdown(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[2].endswith("| yes |") and "25x" in lines[2]
    assert lines[3].endswith("| NO |")
    assert NO_GPU in lines[4] and lines[4].endswith("| - |")


def test_main_writes_json_and_reports_a_failing_benchmark(tmp_path, monkeypatch, capsys):
    import benchmarks
    from benchmarks.__main__ import main

    def good(quick: bool) -> list[Row]:
        return [Row("good", f"quick={quick}", "x", 3.0, 1.0, "base", Target(">=", 2.0), 3.0)]

    def broken(quick: bool) -> list[Row]:
        raise RuntimeError("boom")

    monkeypatch.setattr(benchmarks, "BENCHMARKS", {"good": good, "broken": broken})
    out = tmp_path / "results" / "latest.json"
    assert main(["--only", "good", "--quick", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert [row["measure"] for row in payload["rows"]] == ["quick=True"]
    assert payload["all_met"] is True and payload["quick"] is True and payload["machine"]["cores"] >= 1
    assert "--only good" in payload["command"]
    assert main(["--out", str(out)]) == 1  # every benchmark: one breaks, the other still reports
    payload = json.loads(out.read_text())
    assert payload["errors"] == {"broken": "RuntimeError: boom"} and len(payload["rows"]) == 1
    assert [p.name for p in out.parent.iterdir()] == ["latest.json"]  # no temporary file left behind
    assert "| good |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--only", "nonsense", "--out", str(out)])


def test_every_claim_of_the_issue_has_a_benchmark():
    assert list(BENCHMARKS) == ["input_pipeline", "orchestration", "trainer", "trainer_gpu", "evaluation",
                                "early_stopping", "tracking", "scale"]


# -- the benchmarks at tiny sizes ------------------------------------------------------------

def test_input_pipeline_sides_deliver_the_same_pixels():
    from benchmarks.input_pipeline import measure

    [row] = measure(count=30, size=48, batch_size=4, repeats=1, shard_rows=4, min_seconds=0.01)
    assert row.details["same_pixels"] is True and row.details["shards"] > 1
    assert row.value > 0 and row.baseline > 0 and row.ratio == pytest.approx(row.value / row.baseline)


def test_trainer_and_plain_loop_compute_the_same_losses():
    from benchmarks.trainer_throughput import measure

    steps, end_to_end = measure(size=32, count=120, width=0.125, latent_dim=16, batch_size=8, epochs=1, batches=3,
                                repeats=1)
    assert steps.details["same_losses"] is True, steps.details["last_epoch_loss"]
    assert steps.value > 0 and steps.baseline > 0 and steps.target is not None
    # End to end, train() also validates, checkpoints and draws samples: informational, no target.
    assert end_to_end.target is None and end_to_end.value > 0


def test_gpu_rows_say_no_gpu_here_and_their_code_runs_on_cpu(tmp_path):
    from benchmarks import trainer_gpu
    from data.loader import FaceData

    if not torch.cuda.is_available():
        rows = trainer_gpu.run(quick=True)
        assert rows and all(r.note == NO_GPU and r.met is None for r in rows)
    path = trainer_gpu.tiled_dataset(tmp_path / "faces", size=32, distinct=16, copies=3)
    data = FaceData.load(path, splits=("train", "val"))
    assert data.size("train") == 48
    variants = {"eager fp32": {"fast_path": False}, "fast": {"fast_path": True}}
    runs = trainer_gpu.fast_path_runs(data, "cpu", width=0.125, latent_dim=16, batch_size=8, epochs=2, batches=2,
                                      variants=variants)
    # On CPU the fast path changes only the memory layout (no bf16): the loss curves agree to rounding.
    assert trainer_gpu.curve_deviation(runs["eager fp32"]["train_loss"], runs["fast"]["train_loss"]) < 1e-4
    assert all(r["images_per_s"] > 0 for r in runs.values())
    with pytest.raises(ValueError, match="length"):
        trainer_gpu.curve_deviation([1.0], [1.0, 2.0])
    from benchmarks.trainer_throughput import train_config

    config = train_config(width=0.125, latent_dim=16, batch_size=8, epochs=1, batches=2, sample_faces=0)
    assert trainer_gpu.packed_rate(path, "cpu", config, processes=2, timeout_s=120) > 0


def test_evaluation_scores_every_image_both_ways():
    from benchmarks import evaluation
    from benchmarks.evaluation import measure_size

    row = measure_size(32, count=6, batch_size=4, repeats=1)
    assert row.details["images"] == 6 and row.value > 0 and row.baseline > 0
    assert row.unit == "images/cpu-s" and row.details["clock"] == "cpu"
    # Several threads are timed on the wall clock: CPU-seconds would count every thread.
    wall = measure_size(32, count=4, batch_size=4, repeats=1, threads=2, target=None)
    assert wall.unit == "images/s" and wall.details["threads"] == 2 and wall.met is None
    if not torch.cuda.is_available():
        gpu = evaluation.gpu_row(count=8, repeats=1)
        assert gpu.note == NO_GPU and gpu.met is None and gpu.target is not None


def test_early_stopping_comparison_counts_epochs_and_ranks_hypotheses():
    from benchmarks.early_stopping import compare, spearman

    from study.search.trials import TrialRecord

    def trial(hypothesis, trial_id, objective, ssim, epochs):
        return TrialRecord(phase="tune", trial_id=trial_id, config={"hypothesis": hypothesis, "kl_weight": 1e-3, "lr": 1e-3},
                           status="TERMINATED",
                           metrics={"val_objective": objective, "val_one_minus_ssim": ssim, "epoch": epochs})

    fifo = [trial("a", "1", 1.0, 0.1, 4), trial("a", "2", 2.0, 0.5, 4), trial("b", "3", 3.0, 0.2, 4),
            trial("b", "4", 2.5, 0.3, 4), trial("c", "5", 0.5, 0.4, 4)]
    # ASHA stopped trial 4 early: b's selection falls back to trial 3 and changes b's score.
    asha = [trial("a", "1", 1.0, 0.1, 4), trial("a", "2", 2.2, 0.6, 1), trial("b", "3", 3.0, 0.2, 4),
            trial("b", "4", 3.5, 0.35, 1), trial("c", "5", 0.5, 0.4, 4)]
    result = compare(asha, fifo)
    assert result["trial_epochs"] == {"asha": 14, "fifo": 20}
    assert result["best"] == {"asha": "a", "fifo": "a"} and result["same_best"] is True
    assert result["scores"]["fifo"] == {"a": 0.1, "b": 0.3, "c": 0.4}
    assert result["scores"]["asha"] == {"a": 0.1, "b": 0.2, "c": 0.4}
    assert result["spearman"] == pytest.approx(1.0)
    assert spearman({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 3.0, "b": 2.0, "c": 1.0}) == pytest.approx(-1.0)
    assert spearman({"a": 1.0}, {"a": 1.0}) is None


def test_tracking_logs_the_listener_payload_in_one_batch():
    from benchmarks.tracking import epoch_payload, logged_metrics, measure

    metrics = logged_metrics(epoch_payload())
    assert "node_id" not in metrics and "trial_id" not in metrics and "done" not in metrics
    assert {"val_objective", "train_total", "epoch"} <= set(metrics)
    [row] = measure(epochs=2, repeats=1)
    assert row.details["metrics_per_epoch"] == len(metrics) and not row.details["tracker_degraded"]
    assert 0 < row.value < row.baseline  # one batched write beats one write per metric


def test_orchestration_study_config_spreads_trials_evenly():
    from benchmarks.orchestration import study_config

    config = study_config(100)
    assert len(config.hypotheses()) == 10 and config.total_trials == 100
    small = study_config(3, hypotheses=3)
    assert small.total_trials >= 3


@pytest.mark.slow
def test_orchestration_runs_both_stacks_on_ray():
    from benchmarks.orchestration import measure

    [row] = measure(trials=2, bare_trials=1, work_s=0.0)
    assert row.details["trials"] == {"maskvae": 2, "bare": 1}
    assert row.details["mlflow_runs"] == 2 and row.details["mlflow_degraded"] == 0.0
    assert row.value is not None and row.baseline > 0 and math.isfinite(row.ratio)


def test_scale_study_config_has_twenty_hypotheses_of_combined_losses():
    from benchmarks.scale import measure, study_config

    config = study_config(2000, hypotheses=20)
    names = [h.name for h in config.hypotheses()]
    assert len(set(names)) == 20 and config.total_trials == 2000
    assert any("+" in name for name in names)
    with pytest.raises(ValueError, match="window"):
        measure(trials=60, early=25, window=20)
    with pytest.raises(ValueError, match="before the last"):
        measure(trials=60, early=40, window=20)  # 21-60 around trial 40 would overlap the last 41-60


@pytest.mark.slow
def test_scale_reads_the_driver_per_window_through_the_real_stack():
    """The quick mode's shape: every trial ran through the listeners, one clock reading per window."""
    from benchmarks.scale import run

    cpu, wall, memory = run(quick=True)
    details = cpu.details
    assert details["trials"] == 80 and details["errors"] == 0 and details["mlflow_degraded"] is False
    windows = details["windows"]
    assert [w["trials"] for w in windows] == [20, 40, 60, 80]
    assert details["trials_compared"] == {"early": [1, 40], "late": [41, 80]}
    assert cpu.target is not None and cpu.value > 0 and cpu.baseline > 0
    assert cpu.value == pytest.approx((windows[2]["cpu_s_per_trial"] + windows[3]["cpu_s_per_trial"]) / 2)
    assert cpu.ratio == pytest.approx(cpu.value / cpu.baseline)
    assert wall.value > 0 and wall.target is None
    assert memory.unit == "MiB" and memory.value > 100


def test_a_target_on_the_threshold_is_met_despite_float_rounding():
    from benchmarks.common import Row, Target

    from scipy.stats import spearmanr

    rho = spearmanr([1, 2, 3, 4], [2, 1, 3, 4]).statistic  # one adjacent swap among four: 0.8, but not exactly
    row = Row(benchmark="b", measure="m", unit="rho", value=rho, target=Target(">=", 0.8, on="value"))
    assert rho < 0.8 and row.target.met(row) is True
    assert Target(">=", 0.8, on="value").met(Row(benchmark="b", measure="m", unit="rho", value=0.79)) is False
