"""`decodekit bench` from the command line: mistakes print one line and exit 2 before any model loads; a
whole run on a tiny model directory writes every output; `--compare` prints the differences of two runs."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import decodekit.models
from bench_helpers import META, make_row, save_tiny_model
from decodekit.bench.metrics import summarize
from decodekit.cli.app import app
from user_errors import error_lines


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(decodekit.models, "load_model", refuse)


def bench(*args):
    result = CliRunner().invoke(app, ["bench", *args])
    return result


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.output, result.exception)
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("decodekit: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args,fragments", [
    (["--methods", "ar,nosuch"], ["unknown method 'nosuch'", "hf-pld"]),
    (["--categories", "qa,nosuch"], ["unknown category 'nosuch'", "translation"]),
    (["--methods", "ar,hf-assisted"], ["hf-assisted needs --draft-model"]),
    (["--methods", "ar", "--option", "nosuch=3"], ["option 'nosuch'"]),
    (["--methods", "ar", "--option", "novalue"], ["KEY=VALUE"]),
    (["--methods", "ar", "--draft-model", "smollm2-135m"], ["--draft-model is taken by none"]),
    (["--suite", "/nonexistent/suite.jsonl"], ["unknown suite"]),
    (["--limit", "0"], ["--limit"]),
    (["--repeat", "0"], ["--repeat"]),
    (["--turns", "second"], ["--turns"]),
    (["--temperature", "-1"], ["--temperature"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens"]),
])
def test_mistakes_fail_in_one_line_before_any_model_loads(no_model_load, args, fragments):
    assert_one_line_error(bench(*args), *fragments)


def test_a_suite_without_valid_lines_fails_before_loading(no_model_load, tmp_path):
    suite = tmp_path / "bad.jsonl"
    suite.write_text("{oops\n")
    assert_one_line_error(bench("--suite", str(suite)), "no valid prompt", f"{suite}:1")


def write_summary(directory, seconds_fast):
    rows = [make_row("ar", 1, "qa", 2.0, [1, 2, 3, 4], identical=True),
            make_row("fast", 1, "qa", seconds_fast, [1, 2, 3, 4], steps=2, identical=True)]
    directory.mkdir()
    (directory / "summary.json").write_text(json.dumps(summarize(rows, META, ["ar", "fast"])))


def test_compare_prints_per_method_per_category_differences(tmp_path, no_model_load):
    write_summary(tmp_path / "one", 1.0)
    write_summary(tmp_path / "two", 0.5)
    result = bench("--compare", str(tmp_path / "one"), str(tmp_path / "two"))
    assert result.exit_code == 0, result.output
    assert "2.00 → 4.00 (+2.00)" in result.stdout  # fast's speedup vs ar, overall and in qa
    assert result.stdout.count("fast") == 2 and "qa" in result.stdout


def test_compare_needs_two_run_directories(tmp_path, no_model_load):
    write_summary(tmp_path / "one", 1.0)
    (tmp_path / "empty").mkdir()
    assert_one_line_error(bench("--compare", str(tmp_path / "one"), str(tmp_path / "empty")), "no summary.json")


@pytest.mark.integration
def test_a_whole_run_on_a_tiny_model(tmp_path):
    model = save_tiny_model(tmp_path / "tiny")
    suite = tmp_path / "suite.jsonl"
    suite.write_text("\n".join([
        json.dumps({"question_id": 1, "category": "qa", "turns": ["w1 w2 w3 w1 w2"]}),
        "{broken json",
        json.dumps({"question_id": 2, "category": "translation", "turns": "['w4 w5 w4 w5 w4']",
                    "reference": "['w4 w5']"}),
        json.dumps({"question_id": 3, "category": "qa", "turns": [""]}),
        json.dumps({"question_id": 4, "category": "qa", "turns": ["w7 w8", "w9"]}),
    ]) + "\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "decodekit", "bench", "--suite", str(suite), "--model", str(model),
         "--methods", "hf,hf-pld", "--max-new-tokens", "6", "--turns", "all", "--out", str(out), "--threads", "1"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert f"{suite}:2: not valid JSON" in result.stderr and f"{suite}:4: turn 1 is empty" in result.stderr
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "summary.json", "report.md", "speedup.png",
                                               "accepted.png", "viewer.html"}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 3  # questions 1, 2 and both turns of 4, by ar, hf and hf-pld
    assert {(r["question_id"], r["turn"]) for r in rows} == {(1, 1), (2, 1), (4, 1), (4, 2)}
    assert all(r["text"] == "".join(r["pieces"]) and r["new_tokens"] == len(r["token_ids"]) for r in rows)
    assert all(r["identical_to_ar"] for r in rows)  # float32 greedy: transformers agrees with the loop
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["ar", "hf", "hf-pld"] and summary["prompts"] == 3
    assert summary["methods"]["hf"]["speedup_vs_hf"] == 1.0
    assert "chrf" in summary["methods"]["ar"]["by_category"]["translation"]["quality"]
    assert len(summary["problems"]) == 2
    assert "| hf-pld |" in (out / "report.md").read_text()
    assert "hf-pld" in result.stdout and "speedup vs ar" in result.stdout  # the table printed at the end
