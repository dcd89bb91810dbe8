"""JSON-schema-constrained generation on JSONSchemaBench rows: does each method's output parse and satisfy
its schema, with and without the grammar, and how fast is it.

Input: JSONL rows {"id", "category", "schema"} (JSONSchemaBench's format, e.g. tests/data/jsonschema-dev.jsonl); `per_category` keeps the first N rows of each category, in file order.

Prompt (the benchmark gives none): PROMPT_TEMPLATE with the schema's compact JSON text, as a chat user turn
when the model has a chat template.

Per method, constrained (the schema's grammar, constrain/grammar.py, with JSON whitespace "fixed" by default:
`json.dumps`'s layout, since under "flexible" whitespace a small model can spend its whole budget on blank
space, and the fixed separators are tokens the grammar forces) and not:
- parse rate: outputs that are one JSON value (the text stripped of whitespace and of a ``` code fence);
- valid rate: outputs that also satisfy the schema (`jsonschema`, the schema's own draft);
- unsupported: schemas the grammar compiler refuses (reported apart with llguidance's reason; they are left
  out of both the constrained and the unconstrained rows, so that the two cover the same schemas);
- tokens/s over all outputs (prefill included), and decode tokens/s (the prompt's prefill left out, where the
  engine reports it: the constrained and free outputs differ in length, so their prefill shares differ); mask
  milliseconds per generated token (the grammar's mask computation, its
  matcher walk included); forced share: generated tokens that the grammar proposed and verification kept
  (StepRecord.forced) over all generated tokens; speedup: the row's tokens/s over constrained `ar`'s (for the
  decodekit methods under the grammar, whose outputs are the same tokens, that is also the ratio of times).
Greedy decoding; every method of a row sees the same schemas.

Baseline (`llamacpp`, optional: llama-cpp-python): llama.cpp's own JSON-schema grammar on the model's GGUF file
(bench/baselines/llamacpp_grammar.py), on the same prompt tokens, constrained and not. Its converter accepts
some schemas llguidance refuses and refuses others; its rows cover the schemas both support, and the ones
only llguidance supports are listed apart with llama.cpp's reason. Its grammar allows flexible whitespace.

The summary (`summarize`) adds, per subset (category), how many schemas the grammar compiler supports and
each method's valid share, and checks the issue's targets on the run's own figures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from decodekit.errors import UserError

PROMPT_TEMPLATE = ("Write a JSON value that satisfies the following JSON Schema. Reply with the JSON value only.\n\n"
                   "JSON Schema:\n{schema}\n")
FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class Row:
    id: str
    category: str
    schema: dict | bool


@dataclass
class Tally:
    method: str
    constrained: bool
    outputs: int = 0
    parsed: int = 0
    valid: int = 0
    tokens: int = 0
    forced: int = 0
    seconds: float = 0.0
    prefill_seconds: float | None = 0.0  # None where the engine does not say (the baseline)
    mask_seconds: float = 0.0
    incomplete: int = 0  # constrained outputs that hit the length limit before the grammar accepted
    failures: list[str] = field(default_factory=list)  # ids whose output does not satisfy the schema
    by_category: dict[str, list[int]] = field(default_factory=dict)  # category -> [outputs, parsed, valid]
    baseline: bool = False  # another engine's rows: no mask time or forced tokens are measured there

    def add(self, row: Row, parsed: bool, valid: bool, tokens: int, seconds: float, forced: int = 0,
            mask_seconds: float = 0.0, incomplete: bool = False, prefill_seconds: float | None = None) -> None:
        self.outputs += 1
        if self.prefill_seconds is not None:
            self.prefill_seconds = None if prefill_seconds is None else self.prefill_seconds + prefill_seconds
        self.parsed += parsed
        self.valid += valid
        self.tokens += tokens
        self.forced += forced
        self.seconds += seconds
        self.mask_seconds += mask_seconds
        self.incomplete += incomplete
        counts = self.by_category.setdefault(row.category, [0, 0, 0])
        counts[0] += 1
        counts[1] += parsed
        counts[2] += valid
        if not valid:
            self.failures.append(row.id)


@dataclass
class BaselineOutput:
    token_ids: list[int]
    text: str
    seconds: float
    finish_reason: str  # "eos" or "length"


class GrammarBaseline(Protocol):
    """Another engine's own schema-constrained decoding (llama.cpp's, in bench/baselines/llamacpp_grammar.py)."""

    name: str

    def compile(self, schema) -> tuple[object | None, str | None]:
        """(the engine's grammar, None), or (None, why it cannot take the schema)."""

    def generate(self, prompt_ids: list[int], max_new_tokens: int, grammar) -> BaselineOutput:
        """Greedy decoding, under `grammar` unless it is None."""


@dataclass
class SuiteResult:
    tallies: list[Tally]
    unsupported: list[tuple[str, str]]  # (schema id, llguidance's reason)
    baseline_unsupported: list[tuple[str, str]]  # schemas llguidance supports and the baseline does not
    subsets: dict[str, list[int]]  # category -> [schemas, supported by the grammar compiler]


def load_rows(path: str | Path, per_category: int | None = None) -> list[Row]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UserError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    rows, seen = [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            row = Row(str(data["id"]), str(data["category"]), data["schema"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{number}: expected a JSON object with id, category and schema") from None
        if per_category is None or seen.get(row.category, 0) < per_category:
            seen[row.category] = seen.get(row.category, 0) + 1
            rows.append(row)
    if not rows:
        raise UserError(f"{path}: no schemas")
    return rows


def parse_output(text: str) -> tuple[bool, object]:
    stripped = text.strip()
    fenced = FENCE.match(stripped)
    try:
        return True, json.loads(fenced.group(1) if fenced else stripped)
    except ValueError:
        return False, None


def _is_valid(schema, value) -> bool:
    import jsonschema

    return jsonschema.validators.validator_for(schema)(schema).is_valid(value)


def prompt_ids(model, row: Row) -> list[int]:
    return model.encode(PROMPT_TEMPLATE.format(schema=json.dumps(row.schema, separators=(",", ":"))))


def run_suite(model, rows: list[Row], methods: list[str], max_new_tokens: int = 256, session=None,
              progress: Callable[[str], None] | None = None, whitespace: str = "fixed",
              baseline: GrammarBaseline | None = None) -> SuiteResult:
    """Every method (then the baseline, if any) on every supported schema, constrained and then not."""
    from decodekit.constrain import Grammar
    from decodekit.core import DecodeRequest
    from decodekit.methods import build_decoder
    from decodekit.session import Session
    from decodekit.speculative.decoding import Decoding

    session = session or Session()
    grammars, unsupported, subsets = {}, [], {}
    for row in rows:
        counts = subsets.setdefault(row.category, [0, 0])
        counts[0] += 1
        try:
            grammars[row.id] = Grammar.json_schema(row.schema, whitespace=whitespace)
            counts[1] += 1
        except UserError as error:
            unsupported.append((row.id, str(error)))
    supported = [row for row in rows if row.id in grammars]
    prompts = {row.id: prompt_ids(model, row) for row in supported}  # every method and the baseline read these
    tallies = []
    for constrained in (True, False):
        for method in methods:
            tally = Tally(method, constrained)
            decoder = build_decoder(method, model, session, {}, scope=method)  # each method learns apart
            for row in supported:
                grammar = grammars[row.id]
                masks_before = grammar.stats.seconds
                request = DecodeRequest(prompts[row.id], max_new_tokens,
                                        processors=[grammar] if constrained else [])
                result = Decoding(model, request, decoder, method).run()
                parsed, value = parse_output(result.text)
                valid = parsed and _is_valid(row.schema, value)
                tally.add(row, parsed, valid, len(result.token_ids), result.seconds, result.stats["forced_tokens"],
                          grammar.stats.seconds - masks_before if constrained else 0.0, result.complete is False,
                          result.prefill_seconds)
                if progress is not None:
                    progress(f"{method} {'constrained' if constrained else 'free'} {row.id}: "
                             f"{len(result.token_ids)} tokens in {result.seconds:.1f} s, "
                             f"{result.stats['forced_tokens']} forced, {result.finish_reason}, valid={valid}")
            tallies.append(tally)
    baseline_unsupported: list[tuple[str, str]] = []
    if baseline is not None:
        compiled = {}
        for row in supported:
            grammar, reason = baseline.compile(row.schema)
            if grammar is None:
                baseline_unsupported.append((row.id, reason))
            else:
                compiled[row.id] = grammar
        for constrained in (True, False):
            tally = Tally(baseline.name, constrained, baseline=True)
            for row in supported:
                if row.id not in compiled:
                    continue
                out = baseline.generate(prompts[row.id], max_new_tokens,
                                        compiled[row.id] if constrained else None)
                parsed, value = parse_output(out.text)
                valid = parsed and _is_valid(row.schema, value)
                tally.add(row, parsed, valid, len(out.token_ids), out.seconds,
                          incomplete=constrained and out.finish_reason == "length")
                if progress is not None:
                    progress(f"{baseline.name} {'constrained' if constrained else 'free'} {row.id}: "
                             f"{len(out.token_ids)} tokens in {out.seconds:.1f} s, {out.finish_reason}, valid={valid}")
            tallies.append(tally)
    return SuiteResult(tallies, unsupported, baseline_unsupported, subsets)


def tokens_per_second(tally: Tally) -> float | None:
    return tally.tokens / tally.seconds if tally.seconds else None


def _rate(count: int, outputs: int) -> float | None:
    return count / outputs if outputs else None


def summarize(result: SuiteResult, meta: dict) -> dict:
    """summary.json: `meta`, per method the counts and rates, per subset the supported share and each
    constrained method's valid share, the unsupported schemas with their reasons, and the targets."""
    reference = next((t for t in result.tallies if t.method == "ar" and t.constrained), None)
    methods = []
    for t in result.tallies:
        speed = tokens_per_second(t)
        ours = t.constrained and not t.baseline
        ref_speed = tokens_per_second(reference) if reference is not None else None
        methods.append({
            "method": t.method, "constrained": t.constrained, "outputs": t.outputs, "parsed": t.parsed,
            "valid": t.valid, "incomplete": t.incomplete if t.constrained else None,
            "parse_rate": _rate(t.parsed, t.outputs), "valid_rate": _rate(t.valid, t.outputs),
            "valid_of_finished": _rate(t.valid, t.outputs - t.incomplete) if t.constrained else None,
            "tokens": t.tokens, "seconds": t.seconds, "tokens_per_second": speed,
            "prefill_seconds": t.prefill_seconds,
            "decode_tokens_per_second": (t.tokens / (t.seconds - t.prefill_seconds)
                                         if t.prefill_seconds is not None and t.seconds > t.prefill_seconds
                                         else None),
            "mask_ms_per_token": 1000 * t.mask_seconds / t.tokens if ours and t.tokens else None,
            "forced_share": t.forced / t.tokens if ours and t.tokens else None,
            "speedup_vs_constrained_ar": speed / ref_speed if speed and ref_speed else None,
            "by_category": {c: {"outputs": n, "parsed": k, "valid": v} for c, (n, k, v) in t.by_category.items()},
            "failures": t.failures,
        })
    return {"meta": meta,
            "subsets": {c: {"schemas": n, "supported": k} for c, (n, k) in result.subsets.items()},
            "methods": methods,
            "unsupported": [{"id": i, "reason": r} for i, r in result.unsupported],
            "baseline_unsupported": [{"id": i, "reason": r} for i, r in result.baseline_unsupported],
            "targets": targets(methods, meta.get("baseline"))}


def targets(methods: list[dict], baseline: str | None) -> list[dict]:
    """The constraints issue's targets, each {target, met, figure}, on this run's rows (None: not measurable)."""
    ours = [m for m in methods if m["method"] != baseline]
    constrained = {m["method"]: m for m in ours if m["constrained"]}
    free = {m["method"]: m for m in ours if not m["constrained"]}
    found = []
    finished = [m for m in constrained.values() if m["outputs"]]
    all_valid = all(m["valid"] >= m["outputs"] - m["incomplete"] for m in finished)
    figure = ", ".join(f"{m['method']} {m['valid']}/{m['outputs'] - m['incomplete']}" for m in finished)
    found.append({"target": "100% of finished constrained outputs valid", "met": all_valid if finished else None,
                  "figure": figure})
    ar_c, ar_f = constrained.get("ar"), free.get("ar")
    if ar_c and ar_f and ar_c["tokens_per_second"] and ar_f["tokens_per_second"]:
        ratio = ar_c["tokens_per_second"] / ar_f["tokens_per_second"]
        found.append({"target": "constrained ar within 10% of unconstrained ar tokens/s", "met": ratio >= 0.9,
                      "figure": f"{ratio:.2f}x"})
    speculative = [m for name, m in constrained.items() if name != "ar" and m["speedup_vs_constrained_ar"]]
    if speculative:
        best = max(speculative, key=lambda m: m["speedup_vs_constrained_ar"])
        found.append({"target": "best speculative method >= 1.5x constrained ar tokens/s",
                      "met": best["speedup_vs_constrained_ar"] >= 1.5,
                      "figure": f"{best['method']} {best['speedup_vs_constrained_ar']:.2f}x"})
        theirs = next((m for m in methods if m["method"] == baseline and m["constrained"]), None)
        if theirs is not None and theirs["tokens_per_second"]:
            ratio = best["tokens_per_second"] / theirs["tokens_per_second"]
            found.append({"target": f"best speculative method ahead of {baseline}'s grammar", "met": ratio > 1.0,
                          "figure": f"{best['method']} {best['tokens_per_second']:.1f} against "
                                    f"{theirs['tokens_per_second']:.1f} tokens/s ({ratio:.2f}x)"})
    return found
