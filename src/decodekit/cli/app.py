"""The `decodekit` typer app and its entry point. Every command runs through `one_line_errors`: a user's
mistake (decodekit.errors.UserError) prints one line on stderr and exits with code 2, no traceback; a parameter
out of range is named by its flag."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import typer

from decodekit.cli.bench import bench
from decodekit.cli.bench_json import bench_json
from decodekit.cli.generate import generate
from decodekit.cli.listings import methods, models, models_install
from decodekit.cli.profile import profile
from decodekit.cli.serve import bench_serve, serve
from decodekit.errors import ParameterError, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Training-free faster and better decoding for language models.")


def flag_message(error: UserError) -> str:
    """The error as the command line reads: a parameter under its flag's name (max_new_tokens: --max-new-tokens)."""
    if isinstance(error, ParameterError):
        return error.message_for("--" + error.parameter.replace("_", "-"))
    return str(error)


def one_line_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def guarded(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            print(f"decodekit: error: {flag_message(error)}", file=sys.stderr)
            raise typer.Exit(2) from None

    return guarded


app.command()(one_line_errors(generate))
models_app = typer.Typer(help="The embedded model catalog; `models install NAME` installs one.")
models_app.callback(invoke_without_command=True)(one_line_errors(models))
models_app.command("install")(one_line_errors(models_install))
app.add_typer(models_app, name="models")
app.command()(one_line_errors(methods))
app.command()(one_line_errors(bench))
app.command("bench-json")(one_line_errors(bench_json))
app.command()(one_line_errors(profile))
app.command()(one_line_errors(serve))
app.command("bench-serve")(one_line_errors(bench_serve))


def main() -> None:
    from decodekit.cli.bench import bare_ray_flag

    app(args=bare_ray_flag(sys.argv[1:]))
