"""What a user's mistake prints: one line on standard error, after at most the model cache's one-time notices
(the first load of a model converts it and says so; models/loading.py)."""

from __future__ import annotations

ONE_TIME_NOTICE = "later loads use the cache"


def error_lines(stderr: str) -> list[str]:
    """The lines of `stderr` that are not the model cache's one-time notices."""
    return [line for line in stderr.strip().splitlines() if ONE_TIME_NOTICE not in line]
