"""`maskvae` command line. Bad input exits 2 with a message naming the field or file."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from study.cli import data as cli_data
from study.cli import predict as cli_predict
from study.cli import study as cli_study
from study.cli import train as cli_train
from study.errors import is_user_error

# Each module contributes its subcommands; `register(subparsers)` adds them with their handlers.
COMMAND_MODULES = [cli_data, cli_train, cli_study, cli_predict]
EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command ended by SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskvae",
        description="Face reconstruction with VAEs and face masks: data, training, the ablation study.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def error_text(error: BaseException) -> str:
    """One line for one problem; a headline plus one line per problem when there are several."""
    problems = list(getattr(error, "problems", None) or [])
    headline = getattr(error, "title", None) or getattr(error, "summary", None)
    if headline is None or len(problems) > 1:
        return str(error).strip()
    if not problems or problems[0] in headline or headline.endswith(problems[0]):
        return headline
    return f"{headline}: {problems[0]}"


def _quiet_broken_pipe() -> int:
    # The reader (`| head`) has gone: further output, including the interpreter's final flush,
    # would only raise again, so stdout is pointed at /dev/null before exiting.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = int(handler(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as error:
        if not is_user_error(error):
            raise
        print(f"maskvae {args.command}: error: {error_text(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"maskvae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
