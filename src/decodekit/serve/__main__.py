"""`python -m decodekit.serve [options]`: the `decodekit serve` command on its own."""

import typer

from decodekit.serve.command import serve


def main() -> None:
    typer.run(serve)


if __name__ == "__main__":
    main()
