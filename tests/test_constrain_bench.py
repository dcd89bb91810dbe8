"""The JSONSchemaBench suite: rows read and checked, unsupported schemas reported apart with their reason,
outputs validated against their schema, and a table with every method constrained and not."""

import json

import pytest

from constrain_tiny import char_model
from decodekit.bench.jsonschema_suite import load_rows, parse_output, run_suite, table
from decodekit.errors import UserError

ENUM = {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "required": ["a"], "additionalProperties": False}
UNSUPPORTED = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}


def write_rows(path, rows):
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_rows_are_read_per_category_and_bad_lines_are_user_errors(tmp_path):
    rows = [{"id": f"s/{i}", "category": "c" if i < 3 else "d", "schema": ENUM} for i in range(5)]
    assert [row.id for row in load_rows(write_rows(tmp_path / "a.jsonl", rows), per_category=2)] == [
        "s/0", "s/1", "s/3", "s/4"]
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(UserError, match="bad.jsonl:1"):
        load_rows(tmp_path / "bad.jsonl")
    with pytest.raises(UserError, match="cannot read"):
        load_rows(tmp_path / "missing.jsonl")


def test_outputs_parse_bare_or_fenced():
    assert parse_output(' {"a": 1} ') == (True, {"a": 1})
    assert parse_output('```json\n{"a": 1}\n```') == (True, {"a": 1})
    assert parse_output('{"a": 1') == (False, None)


def test_a_suite_run_reports_validity_speed_and_unsupported_schemas(tmp_path):
    model = char_model(71, seed=5)
    path = write_rows(tmp_path / "rows.jsonl", [{"id": "t/enum", "category": "t", "schema": ENUM},
                                                {"id": "t/unique", "category": "t", "schema": UNSUPPORTED}])
    tallies, unsupported = run_suite(model, load_rows(path), ["ar", "pld"], max_new_tokens=40)
    assert unsupported == [("t/unique", 'unsupported JSON schema: Unimplemented keys: ["uniqueItems"]')]
    assert [(t.method, t.constrained, t.outputs) for t in tallies] == [
        ("ar", True, 1), ("pld", True, 1), ("ar", False, 1), ("pld", False, 1)]
    constrained = tallies[0]
    assert constrained.valid == 1 and constrained.forced > 0 and constrained.mask_seconds > 0
    assert tallies[2].valid == 0  # a random tiny model does not write valid JSON by itself
    text = table(tallies)
    assert text.count("\n") == 5 and "| ar | yes | 1 | 100% | 100% |" in text
