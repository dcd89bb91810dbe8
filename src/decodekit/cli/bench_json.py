"""`decodekit bench-json`: JSON-schema-constrained decoding on JSONSchemaBench rows (bench/jsonschema_suite.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from decodekit.bench.jsonschema_suite import load_rows, run_suite, table
from decodekit.constrain.grammar import WHITESPACE
from decodekit.errors import UserError
from decodekit.models.catalog import DEFAULT_MODEL


def bench_json(
    schemas: Annotated[Path, typer.Argument(help="JSONL file of {id, category, schema} rows (JSONSchemaBench)")],
    methods: Annotated[str, typer.Option(help="comma-separated decodekit methods")] = "ar,pld,auto",
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = DEFAULT_MODEL,
    max_new_tokens: Annotated[int, typer.Option(help="most tokens per output")] = 256,
    per_category: Annotated[Optional[int], typer.Option(help="the first N schemas of each category")] = None,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, or q4")] = "auto",
    whitespace: Annotated[str, typer.Option(help="JSON whitespace under the grammar: fixed or flexible")] = "fixed",
    out: Annotated[Optional[Path], typer.Option(help="also write the table and details as JSON here")] = None,
) -> None:
    """JSON-schema-constrained decoding on JSONSchemaBench rows: parse and valid rates, speed, forced tokens."""
    from decodekit.methods import get_method
    from decodekit.models import load_model

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if "ar" not in names:
        names.insert(0, "ar")
    for name in names:
        get_method(name, {})
    if whitespace not in WHITESPACE:
        raise UserError(f"--whitespace must be one of {', '.join(WHITESPACE)}, got {whitespace!r}")
    rows = load_rows(schemas, per_category)
    loaded = load_model(model, dtype=dtype)
    start = time.perf_counter()
    tallies, unsupported = run_suite(loaded, rows, names, max_new_tokens,
                                     progress=lambda line: print(line, file=sys.stderr), whitespace=whitespace)
    print(table(tallies))
    for schema_id, reason in unsupported:
        print(f"unsupported: {schema_id}: {reason}")
    print(f"{len(rows)} schemas, {len(unsupported)} unsupported; {time.perf_counter() - start:.0f} s; model "
          f"{loaded.name} {loaded.precision}")
    if out is not None:
        out.write_text(json.dumps({"table": table(tallies), "unsupported": unsupported,
                                   "tallies": [t.__dict__ for t in tallies]}, indent=1))
