"""What the commands share: reading --option KEY=VALUE pairs, and a console for tables on standard output."""

from __future__ import annotations

import sys

from decodekit.errors import UserError


def parse_options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; values that read as numbers become numbers, keys use underscores."""
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option takes KEY=VALUE, got {pair!r}")
        for kind in (int, float):
            try:
                options[key.replace("-", "_")] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key.replace("-", "_")] = value
    return options


def stdout_console():
    """A rich console on standard output, wide enough for the bench tables when it is not a terminal."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=180)
