"""Errors of the data package; each names the file or shard at fault."""

from __future__ import annotations

from collections.abc import Sequence

# Long problem lists are cut in the message (all stay in .problems).
_SHOWN = 50


class DatasetError(ValueError):
    """A dataset (source or prepared) is unusable; ``problems`` lists every reason found."""

    user_error = True  # bad input: the CLI prints it as one line and exits 2 (study.errors.is_user_error)

    def __init__(self, summary: str, problems: Sequence[str] = ()) -> None:
        self.summary = summary
        self.problems: list[str] = list(problems)
        lines = [summary]
        lines += [f"  - {p}" for p in self.problems[:_SHOWN]]
        if len(self.problems) > _SHOWN:
            lines.append(f"  ... and {len(self.problems) - _SHOWN} more")
        super().__init__("\n".join(lines))


class ShardError(DatasetError):
    """Prepared shards that are missing, truncated, corrupted or do not match the manifest (`shard` is the first)."""

    def __init__(self, shard: str, reason: str, more: Sequence[tuple[str, str]] = ()) -> None:
        failures = [(shard, reason), *more]
        self.shard = shard
        self.shards = [name for name, _ in failures]
        if len(failures) == 1:
            super().__init__(f"shard {shard}: {reason}", [f"{shard}: {reason}"])
        else:
            super().__init__(f"{len(failures)} shards are missing or changed", [f"{s}: {r}" for s, r in failures])
