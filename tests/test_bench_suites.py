"""Bench suites: both `turns` forms, malformed lines reported by file and line, category selection, and the
named suites (quick, humaneval, specbench offline and cached)."""

import json
import urllib.error
from pathlib import Path

import pytest

from decodekit.bench import suites
from decodekit.bench.suites import load_suite, parse_line, read_suite
from decodekit.errors import UserError

DEV_FILE = Path(__file__).parent / "data" / "specbench-dev.jsonl"


def write(tmp_path, lines, name="suite.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_turns_as_a_json_list():
    prompt = parse_line(json.dumps({"question_id": 81, "category": "writing", "turns": ["one", "two"]}))
    assert prompt.turns == ("one", "two") and prompt.reference == () and prompt.question_id == 81


def test_turns_and_reference_as_python_literal_strings():
    line = json.dumps({"question_id": 161, "category": "translation",
                       "turns": "['Translate German to English: Guten Morgen .']",
                       "reference": "[\"Good morning .\"]"})
    prompt = parse_line(line)
    assert prompt.turns == ("Translate German to English: Guten Morgen .",)
    assert prompt.reference == ("Good morning .",)


def test_nested_rag_reference_in_either_form():
    listed = parse_line(json.dumps({"question_id": 1, "category": "rag", "turns": ["q"], "reference": [["a", "b"]]}))
    literal = parse_line(json.dumps({"question_id": 1, "category": "rag", "turns": ["q"],
                                     "reference": "[['a', 'b']]"}))
    assert listed.reference == literal.reference == (["a", "b"],)


@pytest.mark.parametrize("line,why", [
    ('{"question_id": 1, "category": "qa", "turns": ["x"]', "not valid JSON"),
    ('{"question_id": 1, "category": "qa"}', "missing `turns`"),
    ('{"question_id": 1, "category": "qa", "turns": ["fine", "  "]}', "turn 2 is empty"),
    ('{"question_id": 1, "category": "qa", "turns": []}', "`turns` is empty"),
    ('{"question_id": 1, "category": "qa", "turns": "not a list"}', "does not spell a list"),
    ('{"question_id": 1, "category": "qa", "turns": [3]}', "not a string"),
    ('{"category": "qa", "turns": ["x"]}', "missing `question_id`"),
    ('[1, 2]', "not a JSON object"),
])
def test_malformed_line(line, why):
    with pytest.raises(ValueError, match=why):
        parse_line(line)


def test_malformed_lines_are_reported_with_file_and_line_and_skipped(tmp_path):
    path = write(tmp_path, [
        json.dumps({"question_id": 1, "category": "qa", "turns": ["first"]}),
        "{not json",
        json.dumps({"question_id": 2, "category": "qa"}),
        "",
        json.dumps({"question_id": 3, "category": "qa", "turns": [""]}),
        json.dumps({"question_id": 1, "category": "qa", "turns": ["again"]}),
        json.dumps({"question_id": 4, "category": "math", "turns": "['last']"}),
    ])
    suite = read_suite(path)
    assert [p.question_id for p in suite.prompts] == [1, 4]
    assert [p.split(": ")[0] for p in suite.problems] == [f"{path}:2", f"{path}:3", f"{path}:5", f"{path}:6"]
    assert "missing `turns`" in suite.problems[1] and "turn 1 is empty" in suite.problems[2]
    assert "appears earlier" in suite.problems[3]


def test_a_file_without_any_valid_line_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no valid prompt"):
        read_suite(write(tmp_path, ["{bad", '{"question_id": 1}']))
    with pytest.raises(UserError, match="not found"):
        read_suite(tmp_path / "missing.jsonl")


def test_select_limit_per_category_and_unknown_category(tmp_path):
    lines = [json.dumps({"question_id": i, "category": c, "turns": [f"t{i}"]})
             for i, c in enumerate(["a", "a", "b", "a", "b", "c"])]
    suite = read_suite(write(tmp_path, lines))
    assert [p.question_id for p in suite.select(limit=1).prompts] == [0, 2, 5]
    assert [p.question_id for p in suite.select(["b", "a"], limit=2).prompts] == [0, 1, 2, 4]
    with pytest.raises(UserError, match="unknown category 'z'.*choose from a, b, c"):
        suite.select(["z"])
    with pytest.raises(UserError, match="--limit"):
        suite.select(limit=0)


def test_the_spec_bench_dev_file_reads_whole():
    suite = read_suite(DEV_FILE)
    assert len(suite.prompts) == 66 and not suite.problems
    assert {"translation", "summarization", "qa", "math_reasoning", "rag", "writing"} <= set(suite.categories)
    gsm = next(p for p in suite.prompts if p.category == "math_reasoning")
    assert "####" in gsm.reference[0]


def test_quick_covers_the_task_families_with_references():
    suite = load_suite("quick")
    assert {"translation", "summarization", "qa", "math_reasoning", "rag"} <= set(suite.categories)
    assert not suite.problems
    for prompt in suite.prompts:
        if prompt.category in ("translation", "summarization", "math_reasoning", "rag"):
            assert prompt.reference, prompt
    assert len(suite.prompts) <= 12  # a run of a minute or two


def test_humaneval_from_the_package_data():
    suite = load_suite("humaneval")
    assert len(suite.prompts) == 164 and suite.categories == ["humaneval"]
    assert "def has_close_elements" in suite.prompts[0].turns[0]
    first = suite.prompts[0].turns[0]
    assert first.startswith("Complete the following Python function:\n```python\nfrom typing import List")
    assert first.endswith("\n```") and suite.prompts[0].reference == ("has_close_elements",)


def test_specbench_offline_names_the_file_to_pass(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(suites.urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match=r"question\.jsonl.*Spec-Bench") as error:
        suites.specbench_path(tmp_path)
    assert "--suite" in str(error.value) and "\n" not in str(error.value)


def test_specbench_is_downloaded_once_and_cached(tmp_path, monkeypatch):
    body = (json.dumps({"question_id": 81, "category": "writing", "turns": "['hello']"}) + "\n").encode()
    calls = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return body

    def fake(url, timeout):
        calls.append(url)
        return Response()

    monkeypatch.setattr(suites.urllib.request, "urlopen", fake)
    first = suites.specbench_path(tmp_path)
    second = suites.specbench_path(tmp_path)
    assert first == second and calls == [suites.SPECBENCH_URL]
    assert read_suite(first).prompts[0].turns == ("hello",)
