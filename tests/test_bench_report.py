"""report.md and the plots from hand-made results: the tables, the notes, and two PNG files."""

from bench_helpers import META, make_row
from decodekit.bench.metrics import summarize
from decodekit.bench.report.markdown import render_markdown
from decodekit.bench.report.write import write_report


def results():
    trace = [{"committed": 3, "drafted": ["a", "b", "c"], "parents": [-1, 0, 1], "accepted": [0, 1]},
             {"committed": 1, "drafted": [], "parents": [], "accepted": []}]
    return [
        make_row("ar", 1, "math_reasoning", 2.0, [1, 2, 3, 4], reference="#### 4", text="so 4", identical=True,
                 trace=[{"committed": 1, "drafted": [], "parents": [], "accepted": []}] * 4),
        make_row("fast", 1, "math_reasoning", 1.0, [1, 2, 3, 5], steps=2, reference="#### 4", text="so 5",
                 identical=False, diverges_at=3, trace=trace),
        {"question_id": 2, "category": "math_reasoning", "turn": 1, "method": "fast", "error": "RuntimeError: x"},
    ]


def test_markdown_tables_and_notes():
    summary = summarize(results(), dict(META, dtype="bfloat16", skipped={"llamacpp": "not installed"},
                                        problems=["s.jsonl:3: not valid JSON; line skipped"]), ["ar", "fast"])
    text = render_markdown(summary, results())
    assert "| fast | 2.00x | — | 4.0 | 2.00 | 0.75 | 0% | 100% | 0% (median divergence: token 3) |" in text
    assert "## Speedup vs ar by category" in text
    assert "| ar | 1.00x | 1.00x |" in text and "| fast | **2.00x** | **2.00x** |" in text  # the fastest in bold
    assert "| fast | 2.00 | 2.00 |" in text  # mean accepted: no bold
    assert "| method | GSM8K acc |" in text and "| ar | 100% |" in text and "| fast | 0% |" in text
    assert "| fast | 1 | 1 | 3 |" in text  # the divergence table
    assert "- llamacpp did not run: not installed" in text
    assert "- fast: 1 generation(s) failed" in text
    assert "- suite: s.jsonl:3: not valid JSON" in text
    assert "--dtype float32" in text


def test_plots_are_written(tmp_path):
    summary = summarize(results(), META, ["ar", "fast"])
    write_report(summary, results(), tmp_path)
    for name in ("speedup.png", "accepted.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report.md").read_text().startswith("# decodekit bench: hand")
