"""The `decodekit` typer app and its entry point. Every command runs through `one_line_errors`: a user's
mistake (decodekit.errors.UserError) prints one line on stderr and exits with code 2, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import typer

from decodekit.cli.bench import bench
from decodekit.cli.generate import generate
from decodekit.cli.listings import methods, models
from decodekit.cli.profile import profile
from decodekit.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Training-free faster and better decoding for language models.")


def one_line_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def guarded(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            print(f"decodekit: error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None

    return guarded


app.command()(one_line_errors(generate))
app.command()(one_line_errors(models))
app.command()(one_line_errors(methods))
app.command()(one_line_errors(bench))
app.command()(one_line_errors(profile))


def main() -> None:
    app()
