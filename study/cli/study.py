"""`maskvae study ...`: run, resume, status, report, sync-mlflow."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    study = subparsers.add_parser("study", help="run, resume, inspect and report the ablation study")
    commands = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND", required=True)

    run = commands.add_parser("run", help="run a study (no arguments: the smoke preset on synthetic faces, local Ray)")
    run.add_argument("--preset", choices=["smoke", "paper"], help="start from a shipped preset (default: smoke)")
    run.add_argument("--config", type=Path, help="YAML study config (merged over --preset when both are given)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one field, e.g. --set search.trials_per_hypothesis=4 (repeatable)")
    run.add_argument("--out", type=Path, help="study directory (default: runs/<name>-<timestamp>)")
    run.add_argument("--address", help="connect to an existing Ray cluster (e.g. auto) instead of starting local Ray")
    run.add_argument("--show-config", action="store_true", help="print the resolved config and every field's meaning, then exit")
    run.set_defaults(handler=_run)

    for name, handler, text in (
        ("resume", _resume, "continue an interrupted study (a finished one is left unchanged)"),
        ("status", _status, "trials per hypothesis and phase of a study directory"),
        ("report", _report, "regenerate REPORT.md and its figures from stored results"),
        ("sync-mlflow", _sync, "rebuild the MLflow view of a study from its Ray experiment directory"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("directory", type=Path, help="study directory")
        command.set_defaults(handler=handler)


def _run(args: argparse.Namespace) -> int:
    from study.config.loading import config_field_docs, load_study_config

    overrides = list(args.overrides) + ([f"ray.address={args.address}"] if args.address else [])
    config = load_study_config(args.preset, args.config, overrides, check_data=not args.show_config)
    if args.show_config:
        import yaml

        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        for field, doc in config_field_docs():
            print(f"# {field}: {doc}")
        return 0
    from study.driver.run import run_study

    run_study(config, args.out)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from study.driver.run import resume_study

    resume_study(args.directory)
    return 0


def _status(args: argparse.Namespace) -> int:
    from study.driver.status import print_status

    print_status(args.directory)
    return 0


def _report(args: argparse.Namespace) -> int:
    from study.driver.publish import regenerate_report

    regenerate_report(args.directory)
    return 0


def _sync(args: argparse.Namespace) -> int:
    from study.driver.sync import sync_mlflow

    sync_mlflow(args.directory)
    return 0
