"""`python -m benchmarks [--only NAME ...] [--quick] [--out PATH]`."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from pathlib import Path

DEFAULT_OUT = Path(__file__).parent / "results" / "latest.json"


def _quiet_environment() -> None:
    # Set before Ray, MLflow or torch are imported: no telemetry, no GPU probing noise in CPU runs.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


def parse_args(argv: list[str], names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help=f"run only this benchmark (repeatable, or comma-separated): {', '.join(names)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a rough check)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    chosen = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    args.only = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    from . import BENCHMARKS
    from .common import Stopwatch, machine
    from .report import document, markdown, write_json

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv, list(BENCHMARKS))
    selected = [name for name in BENCHMARKS if not args.only or name in args.only]
    rows, errors, clock = [], {}, Stopwatch()
    for name in selected:
        print(f"running {name} ...", flush=True)
        step = Stopwatch()
        try:
            new_rows = BENCHMARKS[name](args.quick)
        except Exception as error:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            errors[name] = f"{error.__class__.__name__}: {error}"
            print(f"  {name} FAILED: {errors[name]}", flush=True)
            continue
        rows.extend(new_rows)
        print(f"  {name}: {step.lap():.0f} s", flush=True)
    seconds = clock.lap()
    command = "python -m benchmarks" + (" " + shlex.join(argv) if argv else "")
    info = machine()
    write_json(args.out, document(rows, info, command, seconds, args.quick, errors))
    print()
    print(markdown(rows))
    print(f"\n{info['cpu']}, {info['cores']} cores, GPU: {info['gpu'] or 'none'}; {seconds:.0f} s; "
          f"results in {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
