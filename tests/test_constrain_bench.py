"""The JSONSchemaBench suite: rows read and checked, unsupported schemas reported apart with their reason,
outputs validated against their schema, and a table with every method constrained and not."""

import json

import pytest

from constrain_tiny import char_model
from decodekit.bench.jsonschema_suite import BaselineOutput, load_rows, parse_output, run_suite, summarize
from decodekit.bench.report.jsonschema import render_report, subset_table, table
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
    result = run_suite(model, load_rows(path), ["ar", "pld"], max_new_tokens=40)
    assert result.unsupported == [("t/unique", 'unsupported JSON schema: Unimplemented keys: ["uniqueItems"]')]
    assert result.subsets == {"t": [2, 1]}
    tallies = result.tallies
    assert [(t.method, t.constrained, t.outputs) for t in tallies] == [
        ("ar", True, 1), ("pld", True, 1), ("ar", False, 1), ("pld", False, 1)]
    constrained = tallies[0]
    assert constrained.valid == 1 and constrained.forced > 0 and constrained.mask_seconds > 0
    assert constrained.by_category == {"t": [1, 1, 1]}
    assert tallies[2].valid == 0  # a random tiny model does not write valid JSON by itself
    summary = summarize(result, {"suite": "rows.jsonl", "baseline": None})
    text = table(summary)
    assert text.count("\n") == 5 and "| ar | yes | 1 | 100% | 100% | 100% | 0 |" in text
    assert "| t | 1/2 | 1/1 | 1/1 |" in subset_table(summary)
    assert summary["targets"][0] == {"target": "100% of finished constrained outputs valid", "met": True,
                                     "figure": "ar 1/1, pld 1/1"}
    report = render_report(summary)
    assert "t/unique: unsupported JSON schema" in report and "## Targets" in report


class ScriptedEngine:
    """A grammar baseline that writes a scripted text: {"a": "x"} under a grammar, prose without; it refuses
    schemas with a "b" property, and cuts at the length limit like a real engine."""

    name = "other"

    def compile(self, schema):
        if "b" in schema.get("properties", {}):
            return None, "no b here"
        return "grammar", None

    def generate(self, prompt_ids, max_new_tokens, grammar):
        text = '{"a": "x"}' if grammar is not None else "I think the answer is x"
        tokens = list(range(len(text)))[:max_new_tokens]
        finish = "eos" if len(tokens) == len(text) else "length"
        return BaselineOutput(tokens, text if finish == "eos" else text[:max_new_tokens], 0.5, finish)


def test_the_baseline_runs_the_schemas_it_takes_and_lists_the_others_apart(tmp_path):
    both = {"type": "object", "properties": {"b": {"type": "integer"}}}
    path = write_rows(tmp_path / "rows.jsonl", [{"id": "t/enum", "category": "t", "schema": ENUM},
                                                {"id": "u/b", "category": "u", "schema": both}])
    result = run_suite(char_model(71, seed=5), load_rows(path), ["ar"], max_new_tokens=40, baseline=ScriptedEngine())
    assert result.baseline_unsupported == [("u/b", "no b here")]
    theirs = [t for t in result.tallies if t.method == "other"]
    assert [(t.constrained, t.outputs, t.valid, t.tokens, t.incomplete) for t in theirs] == [
        (True, 1, 1, 10, 0), (False, 1, 0, 23, 0)]
    summary = summarize(result, {"baseline": "other"})
    assert [m["method"] for m in summary["methods"]] == ["ar", "ar", "other", "other"]
    assert summary["baseline_unsupported"] == [{"id": "u/b", "reason": "no b here"}]
    ours, theirs_row = summary["methods"][0], summary["methods"][2]
    assert ours["decode_tokens_per_second"] > ours["tokens_per_second"]  # the prefill left out
    assert theirs_row["prefill_seconds"] is None and theirs_row["decode_tokens_per_second"] is None
    # a cut inside the grammar is incomplete, never valid
    cut = run_suite(char_model(71, seed=5), load_rows(path), ["ar"], max_new_tokens=4, baseline=ScriptedEngine())
    constrained = next(t for t in cut.tallies if t.method == "other" and t.constrained)
    assert (constrained.incomplete, constrained.valid) == (1, 0)


def test_the_targets_read_the_run_figures():
    from decodekit.bench.jsonschema_suite import targets

    def row(method, constrained, speed, valid=3, outputs=3, incomplete=0, speedup=None):
        return {"method": method, "constrained": constrained, "tokens_per_second": speed, "valid": valid,
                "outputs": outputs, "incomplete": incomplete if constrained else None,
                "speedup_vs_constrained_ar": speedup}

    rows = [row("ar", True, 9.5, speedup=1.0), row("pld", True, 15.0, speedup=15 / 9.5),
            row("ar", False, 10.0), row("other", True, 12.0, valid=1)]
    found = {t["target"]: (t["met"], t["figure"]) for t in targets(rows, "other")}
    assert found["100% of finished constrained outputs valid"] == (True, "ar 3/3, pld 3/3")
    assert found["constrained ar within 10% of unconstrained ar tokens/s"] == (True, "0.95x")
    assert found["best speculative method >= 1.5x constrained ar tokens/s"] == (True, "pld 1.58x")
    assert found["best speculative method ahead of other's grammar"][0] is True
    rows[1]["valid"] = 2  # one finished output that is not valid
    assert targets(rows, "other")[0]["met"] is False


@pytest.mark.integration
def test_llamacpp_grammar_baseline_on_the_embedded_model(smollm2_f32, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is an optional extra (make llamacpp)")
    from decodekit.bench.baselines.llamacpp import gguf_file
    from decodekit.bench.baselines.llamacpp_grammar import LlamaCppGrammar

    engine = LlamaCppGrammar(gguf_file("smollm2-135m"), smollm2_f32, "llamacpp", n_ctx=512)
    grammar, reason = engine.compile(ENUM)
    assert reason is None
    ids = smollm2_f32.encode('Reply with {"a": "x"} or {"a": "y"} in JSON.')
    out = engine.generate(ids, 40, grammar)
    assert out.finish_reason == "eos" and json.loads(out.text) in ({"a": "x"}, {"a": "y"})
    free = engine.generate(ids, 8, None)
    assert free.finish_reason == "length" and len(free.token_ids) == 8
    # a type the converter does not know is a reason, not a crash
    grammar, reason = engine.compile({"type": "no-such-type"})
    assert grammar is None and reason


def bench_json(*args):
    from typer.testing import CliRunner

    from decodekit.cli.app import app

    return CliRunner().invoke(app, ["bench-json", *args])


@pytest.mark.parametrize("args,fragment", [
    (["--methods", "ar,nosuch"], "unknown method 'nosuch'"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--whitespace", "wide"], "--whitespace"),
    (["--methods", "ar,llamacpp", "--model", "someone/some-model"], "llamacpp"),
])
def test_bench_json_mistakes_fail_in_one_line_before_any_model_loads(monkeypatch, tmp_path, args, fragment):
    import decodekit.models
    from user_errors import error_lines

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(decodekit.models, "load_model", refuse)
    rows = write_rows(tmp_path / "rows.jsonl", [{"id": "t/enum", "category": "t", "schema": ENUM}])
    result = bench_json(str(rows), "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bench_json_writes_its_summary_and_report(tmp_path):
    model = char_model(71, seed=5)
    model.model.save_pretrained(tmp_path / "model")
    model.tokenizer.save_pretrained(tmp_path / "model")
    rows = write_rows(tmp_path / "rows.jsonl", [{"id": "t/enum", "category": "t", "schema": ENUM}])
    result = bench_json(str(rows), "--model", str(tmp_path / "model"), "--methods", "ar,pld", "--max-new-tokens",
                        "30", "--out", str(tmp_path / "out"), "--threads", "1")
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["meta"]["command"] == (f"decodekit bench-json {rows} --methods ar,pld --model {tmp_path / 'model'} "
                                          "--max-new-tokens 30 --dtype auto --whitespace fixed --threads 1")
    assert [(m["method"], m["constrained"], m["valid"]) for m in summary["methods"]] == [
        ("ar", True, 1), ("pld", True, 1), ("ar", False, 0), ("pld", False, 0)]
    assert "## Targets" in (tmp_path / "out" / "report.md").read_text()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind
