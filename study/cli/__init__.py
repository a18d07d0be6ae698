"""`maskvae` command line. Bad input exits 2 with a message naming the field or file."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from study.cli import data as cli_data
from study.cli import predict as cli_predict
from study.cli import study as cli_study
from study.cli import train as cli_train

# Each module contributes its subcommands; `register(subparsers)` adds them with their handlers.
COMMAND_MODULES = [cli_data, cli_train, cli_study, cli_predict]
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskvae",
        description="Face reconstruction with VAEs and face masks: data, training, the ablation study.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


# Errors that mean "bad input", by the module that defines them. A module never imported cannot
# have raised its error, so looking in sys.modules keeps an error path from importing torch.
_USER_ERROR_CLASSES = (("data.errors", "DatasetError"), ("study.training.checkpoint", "CheckpointError"),
                       ("study.training.trainer", "IncompatibleCheckpointError"), ("models.vae", "ModelFileError"))


def _user_errors() -> tuple[type[BaseException], ...]:
    from study.errors import UserInputError

    loaded = [getattr(sys.modules[module], name) for module, name in _USER_ERROR_CLASSES if module in sys.modules]
    return (UserInputError, FileNotFoundError, *loaded)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except _user_errors() as error:
        print(f"maskvae {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"maskvae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
