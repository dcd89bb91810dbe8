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
- tokens/s over all outputs; mask milliseconds per generated token (the grammar's mask computation, its
  matcher walk included); forced share: generated tokens that the grammar proposed and verification kept
  (StepRecord.forced) over all generated tokens; speedup: constrained `ar`'s total seconds over the row's.
Greedy decoding; every method of a row sees the same schemas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
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
    mask_seconds: float = 0.0
    incomplete: int = 0  # constrained outputs that hit the length limit before the grammar accepted
    failures: list[str] = field(default_factory=list)  # ids whose output does not satisfy the schema


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


def run_suite(model, rows: list[Row], methods: list[str], max_new_tokens: int = 256, session=None,
              progress=None, whitespace: str = "fixed") -> tuple[list[Tally], list[tuple[str, str]]]:
    """The tallies (per method: constrained, then unconstrained) and the unsupported schemas (id, reason)."""
    import jsonschema

    from decodekit.constrain import Grammar
    from decodekit.core import DecodeRequest
    from decodekit.methods import build_decoder
    from decodekit.session import Session
    from decodekit.speculative.decoding import Decoding

    session = session or Session()
    grammars, unsupported = {}, []
    for row in rows:
        try:
            grammars[row.id] = Grammar.json_schema(row.schema, whitespace=whitespace)
        except UserError as error:
            unsupported.append((row.id, str(error)))
    supported = [row for row in rows if row.id in grammars]
    tallies = []
    for constrained in (True, False):
        for method in methods:
            tally = Tally(method, constrained)
            decoder = build_decoder(method, model, session, {}, scope=method)  # each method learns apart
            for row in supported:
                grammar = grammars[row.id]
                prompt = PROMPT_TEMPLATE.format(schema=json.dumps(row.schema, separators=(",", ":")))
                masks_before = grammar.stats.seconds
                request = DecodeRequest(model.encode(prompt), max_new_tokens,
                                        processors=[grammar] if constrained else [])
                result = Decoding(model, request, decoder, method).run()
                parsed, value = parse_output(result.text)
                valid = parsed and jsonschema.validators.validator_for(row.schema)(row.schema).is_valid(value)
                tally.outputs += 1
                tally.parsed += parsed
                tally.valid += valid
                tally.tokens += len(result.token_ids)
                tally.forced += result.stats["forced_tokens"]
                tally.seconds += result.seconds
                tally.mask_seconds += grammar.stats.seconds - masks_before if constrained else 0.0
                tally.incomplete += result.complete is False
                if not valid:
                    tally.failures.append(row.id)
                if progress is not None:
                    progress(f"{method} {'constrained' if constrained else 'free'} {row.id}: "
                             f"{len(result.token_ids)} tokens in {result.seconds:.1f} s, "
                             f"{result.stats['forced_tokens']} forced, {result.finish_reason}, valid={valid}")
            tallies.append(tally)
    return tallies, unsupported


def table(tallies: list[Tally]) -> str:
    reference = next((t for t in tallies if t.method == "ar" and t.constrained), None)
    lines = ["| method | grammar | outputs | parse | valid | incomplete | tokens/s | mask ms/token | forced share | "
             "speedup vs constrained ar |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in tallies:
        rate = lambda n: f"{n / t.outputs:.0%}" if t.outputs else "-"  # noqa: E731
        speed = f"{t.tokens / t.seconds:.1f}" if t.seconds else "-"
        mask = f"{1000 * t.mask_seconds / t.tokens:.3f}" if t.constrained and t.tokens else "-"
        forced = f"{t.forced / t.tokens:.0%}" if t.constrained and t.tokens else "-"
        speedup = f"{reference.seconds / t.seconds:.2f}x" if reference and t.seconds else "-"
        lines.append(f"| {t.method} | {'yes' if t.constrained else 'no'} | {t.outputs} | {rate(t.parsed)} | "
                     f"{rate(t.valid)} | {t.incomplete if t.constrained else '-'} | {speed} | {mask} | {forced} | "
                     f"{speedup} |")
    return "\n".join(lines)

