"""Method options written as text: `--option KEY=VALUE` on the command line, `METHOD:KEY=VALUE` in a bench's
method list."""

from __future__ import annotations

from decodekit.errors import UserError


def parse_options(pairs: list[str], what: str = "--option") -> dict:
    """KEY=VALUE pairs; values that read as numbers become numbers, keys use underscores."""
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{what} takes KEY=VALUE, got {pair!r}")
        for kind in (int, float):
            try:
                options[key.replace("-", "_")] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key.replace("-", "_")] = value
    return options


def split_method_label(label: str) -> tuple[str, str, dict]:
    """`NAME` or `NAME:KEY=VALUE[:KEY=VALUE...]` as (its canonical label, the name, its own options); a key
    given twice is an error."""
    name, *pairs = [part.strip() for part in label.split(":")]
    keys = [pair.partition("=")[0].replace("-", "_") for pair in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise UserError(f"method {label!r}: option {twice[0]!r} is given twice")
    return ":".join([name, *pairs]), name, parse_options(pairs, what=f"method {label!r}: an option")


def base_method(label: str) -> str | None:
    """The plain method a `NAME:KEY=VALUE` label varies (None for a plain name)."""
    name, sep, _ = label.partition(":")
    return name.strip() if sep else None
