"""maskvae's speed claims, each measured as a ratio against a baseline timed in the same run.

`python -m benchmarks` runs them all, prints a table and writes benchmarks/results/latest.json.
"""
from __future__ import annotations

from collections.abc import Callable

from . import early_stopping, evaluation, input_pipeline, orchestration, scale, tracking, trainer_gpu, trainer_throughput
from .common import Row

# name -> run(quick) -> rows; in the order the claims are listed in the README.
BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {
    input_pipeline.NAME: input_pipeline.run,
    orchestration.NAME: orchestration.run,
    trainer_throughput.NAME: trainer_throughput.run,
    trainer_gpu.NAME: trainer_gpu.run,
    evaluation.NAME: evaluation.run,
    early_stopping.NAME: early_stopping.run,
    tracking.NAME: tracking.run,
    scale.NAME: scale.run,
}
