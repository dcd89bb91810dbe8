"""What the commands share: a console for tables on standard output."""

from __future__ import annotations

import sys


def stdout_console():
    """A rich console on standard output, wide enough for the bench tables when it is not a terminal."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=180)
