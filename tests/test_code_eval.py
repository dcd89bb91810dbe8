"""Code suites: HumanEval and MBPP problems, their programs from chat replies, scoring rows in the sandbox,
pass@1 with its Wilson interval and the exact McNemar comparison with ar, and the report's code part."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench_helpers import META, make_row
from decodekit.bench.code_eval.sandbox import Limits
from decodekit.bench.code_eval.score import check_reply, count_checks, score_rows
from decodekit.bench.code_eval.stats import binomial_two_sided, code_block, mcnemar_exact, wilson
from decodekit.bench.code_eval.tasks import MBPP_INSTRUCTION, called_function
from decodekit.bench.code_reply import extract_code
from decodekit.bench.metrics import summarize
from decodekit.bench.outcome import Outcome
from decodekit.bench.report.markdown import render_markdown
from decodekit.bench.report.write import write_report
from decodekit.bench.rows import FailedRow, ResultRow
from decodekit.bench.suites import Suite, load_suite, read_suite
from decodekit.errors import UserError
from decodekit.trace import GenerationResult, StepRecord

DATA = Path(__file__).parent / "data"
LIMITS = Limits(seconds=3)


@pytest.fixture(scope="module")
def humaneval():
    return {p.question_id: p for p in load_suite("humaneval").prompts}


@pytest.fixture(scope="module")
def mbpp():
    return read_suite(DATA / "mbpp-sample.jsonl")


def test_a_humaneval_reply_that_repeats_the_signature_without_the_imports_passes(humaneval):
    task = humaneval["HumanEval/0"].code
    reply = ("Here is the implementation:\n\n```python\ndef has_close_elements(numbers: List[float], threshold: float)"
             " -> bool:\n    return any(abs(a - b) < threshold for i, a in enumerate(numbers)\n"
             "               for b in numbers[i + 1:])\n```\n\nIt compares every pair.")
    program = task.program(reply)
    assert program.startswith("from typing import List\n\n\ndef has_close_elements")
    assert program.rstrip().endswith("check(has_close_elements)")
    assert check_reply(task, reply, LIMITS).passed
    wrong = reply.replace("< threshold", "> threshold")
    verdict = check_reply(task, wrong, LIMITS)
    assert not verdict.passed and verdict.reason.startswith("failed: AssertionError")


def test_a_humaneval_reply_keeps_the_prompts_helper_and_a_body_continuation_gets_the_prompt(humaneval):
    task = humaneval["HumanEval/38"].code  # decode_cyclic: its prompt defines encode_cyclic first
    reply = "```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```"
    assert "def encode_cyclic" in task.program(reply) and check_reply(task, reply, LIMITS).passed
    body = "    for i, a in enumerate(numbers):\n        for b in numbers[i + 1:]:\n" \
           "            if abs(a - b) < threshold:\n                return True\n    return False\n"
    task = humaneval["HumanEval/0"].code
    assert check_reply(task, f"```python\n{body}```", LIMITS).passed


def test_no_code_in_the_reply_fails_without_running(humaneval):
    verdict = check_reply(humaneval["HumanEval/0"].code, "I cannot help with that.", LIMITS)
    assert verdict == replace(verdict, passed=False, reason="no code", seconds=0.0)


def test_mbpp_files_are_told_by_their_keys_and_prompt_with_one_test(mbpp):
    assert [p.question_id for p in mbpp.prompts] == [2, 3, 596] and mbpp.categories == ["mbpp"]
    first = mbpp.prompts[0]
    assert first.code.entry_point == "similar_elements" and first.reference == ("similar_elements",)
    assert first.turns[0] == MBPP_INSTRUCTION.format(
        text="Write a function to find the similar elements from the given two tuple lists.",
        tests="assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)")
    assert first.turns[0].startswith("You are an expert Python programmer, and here is your task: Write a function")
    assert "(1, 2, 3, 4)" not in first.turns[0]  # the other tests stay unseen
    assert first.code.tests.count("assert") == 3


def test_mbpp_reference_solutions_pass_except_the_one_that_fails_upstream(mbpp):
    rows = {json.loads(line)["task_id"]: json.loads(line) for line in (DATA / "mbpp-sample.jsonl").read_text().splitlines()}
    verdicts = {p.question_id: check_reply(p.code, f"```python\n{rows[p.question_id]['code']}\n```", LIMITS)
                for p in mbpp.prompts}
    assert verdicts[2].passed and verdicts[3].passed
    assert not verdicts[596].passed and verdicts[596].reason.startswith("failed: AssertionError: line")


def test_a_malformed_mbpp_line_is_skipped_with_its_reason(tmp_path):
    good = (DATA / "mbpp-sample.jsonl").read_text().splitlines()[0]
    bad = json.dumps({"task_id": 9, "text": "x", "test_list": []})
    (tmp_path / "m.jsonl").write_text(f"{good}\n{bad}\n{{oops\n")
    suite = read_suite(tmp_path / "m.jsonl")
    assert len(suite.prompts) == 1 and len(suite.problems) == 2
    assert "m.jsonl:2: `test_list` must be a non-empty list" in suite.problems[0]
    (tmp_path / "none.jsonl").write_text(f"{bad}\n")
    with pytest.raises(UserError, match="no valid mbpp problem"):
        read_suite(tmp_path / "none.jsonl")


def test_the_function_an_assert_calls():
    assert called_function("assert min_cost([[1, 2]], 2, 2) == 8") == "min_cost"
    assert called_function("assert set(similar(a, b)) == set((4, 5))") == "similar"
    assert called_function("assert math.isclose(area(2), 12.56, rel_tol=0.01)") == "area"
    with pytest.raises(ValueError):
        called_function("assert len([1]) == 1")


@pytest.mark.parametrize("reply,expected", [
    ("Sure! Here is the code:\n\nimport math\n\ndef add(a, b):\n    return a + b\n\nThis adds a and b.\n",
     "import math\n\ndef add(a, b):\n    return a + b\n\n"),
    ("def add(a, b):\n    return a + b\nExplanation: it adds them.", "def add(a, b):\n    return a + b\n"),
    ("[BEGIN]\ndef add(a, b):\n    return a + b\n[DONE]", "def add(a, b):\n    return a + b\n"),
])
def test_code_among_prose_and_mbpp_markers(reply, expected):
    assert extract_code(reply, "add") == expected


def code_suite() -> Suite:
    text = "Write a function to add two numbers."
    line = json.dumps({"task_id": 1, "text": text, "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
                       "test_setup_code": ""})
    path = Path(__file__).parent / "data" / "mbpp-sample.jsonl"  # any path: only the name is used
    from decodekit.bench.suites import read_code_suite
    return read_code_suite(path, "mbpp", "synthetic", [line])


def result(method: str, text: str, question_id=1) -> ResultRow:
    row = make_row(method, question_id, "mbpp", 1.0, [1, 2, 3], text=text)
    return ResultRow(**{k: v for k, v in row.items() if k in ResultRow.__dataclass_fields__})


def test_scoring_goes_on_after_hostile_replies_and_keeps_the_order(tmp_path):
    suite = code_suite()
    outside = tmp_path / "keep.txt"
    outside.write_text("untouched")
    replies = {
        "loop": "```python\ndef add(a, b):\n    while True:\n        pass\n```",
        "write": f"```python\nopen({str(outside)!r}, 'w').write('gone')\ndef add(a, b):\n    return a + b\n```",
        "socket": "```python\nimport socket\nsocket.create_connection(('127.0.0.1', 9))\n```",
        "wrong": "```python\ndef add(a, b):\n    return a - b\n```",
        "prose": "I don't know.",
        "good": "def add(a, b):\n    return a + b\n",
    }
    rows = [result(name, text) for name, text in replies.items()] + [FailedRow(1, "mbpp", 1, "broken", "boom")]
    assert count_checks(rows, suite) == 6
    scored = score_rows(rows, suite, Limits(seconds=2))
    assert [r.method for r in scored] == list(replies) + ["broken"]
    reasons = {r.method: r.check_reason for r in scored if isinstance(r, ResultRow)}
    assert reasons == {"loop": "timeout", "write": "forbidden: write", "socket": "forbidden: socket",
                       "wrong": "failed: AssertionError: line 6: assert add(1, 2) == 3", "prose": "no code",
                       "good": "passed"}
    assert [r.passed for r in scored[:-1]] == [False] * 5 + [True]
    assert scored[-1] == rows[-1] and outside.read_text() == "untouched"


def test_wilson_interval_known_values():
    assert wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-5)
    assert wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-5)
    assert wilson(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-5)
    assert wilson(0, 0) is None


@pytest.mark.parametrize("k,n", [(0, 0), (0, 5), (1, 9), (3, 10), (5, 10), (7, 10), (12, 40), (30, 31)])
def test_exact_binomial_matches_scipy(k, n):
    stats = pytest.importorskip("scipy.stats", reason="scipy (the test extra) checks the exact binomial")
    expected = 1.0 if n == 0 else stats.binomtest(k, n, 0.5).pvalue
    assert binomial_two_sided(k, n) == pytest.approx(expected, rel=1e-9)
    assert mcnemar_exact(k, n - k) == binomial_two_sided(k, n)


def code_rows(solved: dict[str, list[bool]], gates: dict[str, int] | None = None) -> list[dict]:
    rows = []
    for method, outcomes in solved.items():
        for qid, passed in enumerate(outcomes):
            row = make_row(method, qid, "mbpp", 2.0 if method == "ar" else 1.0, [1, 2, 3, 4])
            fired = (gates or {}).get(method)
            row.update(passed=passed, check_reason="passed" if passed else "failed: AssertionError",
                       gate_fired=fired, gate_positions=None if fired is None else 4)
            rows.append(row)
    return rows


def test_summary_code_block_pairs_with_ar_and_reads_the_gate():
    ar = [True, True, False, False, True, False, True, False]
    other = [True, False, True, True, True, True, True, False]
    rows = code_rows({"ar": ar, "gated": other}, gates={"gated": 1})
    rows.append({"question_id": 8, "category": "mbpp", "turn": 1, "method": "gated", "error": "RuntimeError: x"})
    summary = summarize(rows, META, ["ar", "gated"])
    mine = summary["methods"]["gated"]["code"]
    assert mine["problems"] == 9 and mine["solved"] == 6 and mine["pass_at_1"] == round(6 / 9, 4)
    assert mine["pass_at_1_ci95"] == [round(v, 4) for v in wilson(6, 9)]
    assert mine["vs_ar"] == {"problems": 8, "only_method": 3, "only_ar": 1, "both": 3, "neither": 1,
                             "p_value": round(mcnemar_exact(3, 1), 4)}
    assert mine["reasons"] == {"passed": 6, "failed": 2, "generation error": 1}
    assert mine["seconds_per_problem"] == 1.0 and mine["tokens_per_second"] == 4.0
    assert summary["methods"]["ar"]["code"]["vs_ar"] is None
    assert summary["methods"]["ar"]["gate_share"] is None
    assert summary["methods"]["gated"]["gate_share"] == 0.25  # one position in four
    assert summary["methods"]["gated"]["quality"]["pass_at_1"] == 0.75  # of the checked replies
    assert code_block([make_row("ar", 1, "qa", 1.0, [1])], "ar") is None


def test_the_report_has_a_code_table_and_a_pass_at_1_plot(tmp_path):
    rows = code_rows({"ar": [True, False, True], "pld": [True, True, True]})
    summary = summarize(rows, META, ["ar", "pld"])
    text = render_markdown(summary, rows)
    assert "## Code: pass@1" in text and "![pass@1 against time per problem](pass_at_1.png)" in text
    line = next(l for l in text.splitlines() if l.startswith("| pld | 3/3"))
    assert "100.0%" in line and "1 / 0" in line and "| 1 |" in line  # the p-value of one discordant pair
    write_report(summary, rows, tmp_path)
    assert (tmp_path / "pass_at_1.png").stat().st_size > 1000
    from decodekit.bench.report.viewer import viewer_data

    shown = viewer_data(rows, summary, [(1, 1)])["prompts"][0]["outputs"]
    assert [o["stats"].endswith(", tests: failed: AssertionError") for o in shown] == [True, False]
    plain = summarize([make_row("ar", 1, "qa", 1.0, [1])], META, ["ar"])
    assert "Code: pass@1" not in render_markdown(plain, [])


def test_the_gate_counters_of_a_generation():
    steps = [StepRecord([1]), StepRecord([2])]
    result = GenerationResult("", [1, 2], "length", "ar", 3, steps, 1.0, 0.1)
    plain = Outcome.from_result(result)
    assert plain.gate_fired is None and plain.gate_positions is None
    result.quality = {"uscd_gate_share": 0.5, "gate_fired": 1.0, "gate_positions": 2.0}
    gated = Outcome.from_result(result)
    assert (gated.gate_fired, gated.gate_positions) == (1, 2)


def test_mistakes_in_code_options_fail_in_one_line(tmp_path, monkeypatch):
    import decodekit.models
    from typer.testing import CliRunner

    from decodekit.cli.app import app

    monkeypatch.setattr(decodekit.models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": 1, "text": "x", "test_list": ["assert len([]) == 0"]}) + "\n")
    for args, fragment in ((["--suite", str(bad)], "no valid mbpp problem"),
                           (["--check-seconds", "0"], "--check-seconds must be positive")):
        result = CliRunner().invoke(app, ["bench", "--methods", "ar", *args])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], lines


@pytest.mark.integration
def test_a_humaneval_bench_on_the_embedded_model(tmp_path):
    """Two HumanEval problems through ar and pld on the embedded SmolLM2, a few tokens each: every reply is
    checked in the sandbox, and the code part of summary.json, report.md and pass_at_1.png are written."""
    from typer.testing import CliRunner

    from decodekit.cli.app import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["bench", "--suite", "humaneval", "--limit", "2", "--methods", "ar,pld",
                                      "--max-new-tokens", "48", "--check-seconds", "5", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(isinstance(r["passed"], bool) and r["check_reason"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    for name in ("ar", "pld"):
        code = summary["methods"][name]["code"]
        assert code["problems"] == 2 and 0 <= code["solved"] <= 2 and sum(code["reasons"].values()) == 2
    assert summary["methods"]["pld"]["code"]["vs_ar"]["problems"] == 2
    assert "## Code: pass@1" in (out / "report.md").read_text() and (out / "pass_at_1.png").exists()
