"""The constraint flags of `decodekit generate`: a bad grammar or two constraints fail with one line and exit
code 2 before any model loads."""

from typer.testing import CliRunner

from decodekit.cli.app import app


def run(*args):
    return CliRunner().invoke(app, ["generate", "hi", "--model", "no-such-model", *args])


def test_bad_constraints_fail_before_the_model_loads(tmp_path):
    for args, message in [
        (["--regex", "(ab"], "invalid regular expression"),
        (["--json-schema", '{"type": "strin"}'], "invalid JSON schema"),
        (["--json-schema", str(tmp_path / "none.json")], "--json-schema: no such file"),
        (["--grammar", str(tmp_path / "none.lark")], "--grammar: no such file"),
        (["--regex", "a", "--json-value"], "at most one constraint"),
    ]:
        result = run(*args)
        assert result.exit_code == 2, args
        assert message in result.output and "no-such-model" not in result.output, result.output
        assert result.output.count("\n") == 1
