"""Errors that the CLI turns into a clear message and exit status 2."""
from __future__ import annotations

from collections.abc import Iterable


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its class name when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__


class UserInputError(ValueError):
    """Bad input from the user (config, CLI argument, file). Carries every problem found."""

    def __init__(self, problems: Iterable[str], *, title: str = "invalid input"):
        self.problems = list(problems)
        self.title = title
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.title}:"] + [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def is_user_error(error: BaseException) -> bool:
    """Bad input, not a bug: a UserInputError, a missing file, or an error whose class says
    `user_error = True` (models/ and data/ cannot import this module, so their errors mark themselves)."""
    return isinstance(error, (UserInputError, FileNotFoundError)) or getattr(type(error), "user_error", False) is True


class ConfigError(UserInputError):
    def __init__(self, problems: Iterable[str], *, source: str = "config"):
        super().__init__(problems, title=f"invalid {source}")
