"""Command-line values into a grammar constraint: at most one of a JSON schema (a file or inline JSON text),
any JSON value, a regular expression (inline) or a Lark grammar (a file), checked before any model loads.

Rule for a JSON schema value: one that starts with "{" (or is true/false) is the schema's JSON text; any other
is a file to read. The flags' names are the interface's (e.g. --json-schema); the messages use them.
"""

from __future__ import annotations

from pathlib import Path

from decodekit.constrain.grammar import Grammar
from decodekit.errors import UserError


def grammar_from_options(json_schema: str | None = None, json_value: bool = False, regex: str | None = None,
                         lark: str | None = None, whitespace: str = "flexible",
                         names: tuple[str, str, str, str] = ("--json-schema", "--json-value", "--regex", "--grammar"),
                         ) -> Grammar | None:
    """The grammar the options ask for (None: no constraint). `names` name the options in messages."""
    given = [name for name, value in zip(names, (json_schema, json_value, regex, lark)) if value]
    if len(given) > 1:
        raise UserError(f"give at most one constraint, not {' and '.join(given)}")
    if json_schema:
        return Grammar.json_schema(_schema_text(json_schema, names[0]), whitespace=whitespace)
    if json_value:
        return Grammar.json(whitespace=whitespace)
    if regex:
        return Grammar.regex(regex)
    if lark:
        return Grammar.lark(_read(Path(lark), names[3]))
    return None


def _schema_text(value: str, name: str) -> str:
    path = Path(value)
    stripped = value.strip()
    if not stripped.startswith("{") and stripped not in ("true", "false"):
        return _read(path, name)
    return value


def _read(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{name}: no such file {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{name}: cannot read {str(path)!r}: {error}") from None
