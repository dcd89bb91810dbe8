"""`decodekit bench-json`: JSON-schema-constrained decoding on JSONSchemaBench rows (bench/jsonschema_suite.py)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from decodekit import __version__
from decodekit.bench.jsonschema_suite import load_rows, run_suite, summarize
from decodekit.bench.report.jsonschema import render_report, table
from decodekit.constrain.grammar import WHITESPACE
from decodekit.errors import UserError
from decodekit.files import write_text_atomically
from decodekit.models.catalog import DEFAULT_MODEL

BASELINE = "llamacpp"  # llama.cpp's own JSON-schema grammar (bench/baselines/llamacpp_grammar.py)


def bench_json(
    schemas: Annotated[Path, typer.Argument(help="JSONL file of {id, category, schema} rows (JSONSchemaBench)")],
    methods: Annotated[str, typer.Option(help="comma-separated decodekit methods, and llamacpp for llama.cpp's own "
                                              "grammar (needs llama-cpp-python: make llamacpp)")] = "ar,pld,auto",
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = DEFAULT_MODEL,
    max_new_tokens: Annotated[int, typer.Option(help="most tokens per output")] = 256,
    per_category: Annotated[Optional[int], typer.Option(help="the first N schemas of each category")] = None,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, or q4")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="torch (and llama.cpp) threads")] = None,
    whitespace: Annotated[str, typer.Option(help="JSON whitespace under the grammar: fixed or flexible")] = "fixed",
    out: Annotated[Optional[Path], typer.Option(help="output directory (bench-out/json-<suite>-<time>)")] = None,
) -> None:
    """JSON-schema-constrained decoding on JSONSchemaBench rows: parse and valid rates, speed, forced tokens;
    writes summary.json and report.md."""
    import torch

    from decodekit.bench.machine import backend_description, cpu_description
    from decodekit.methods import get_method
    from decodekit.models import load_model

    names = [m.strip() for m in methods.split(",") if m.strip()]
    with_baseline = BASELINE in names
    names = [name for name in names if name != BASELINE]
    if "ar" not in names:
        names.insert(0, "ar")
    for name in names:
        get_method(name, {})
    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if whitespace not in WHITESPACE:
        raise UserError(f"--whitespace must be one of {', '.join(WHITESPACE)}, got {whitespace!r}")
    gguf = _baseline_gguf(model) if with_baseline else None
    rows = load_rows(schemas, per_category)
    out = out or Path("bench-out") / f"json-{schemas.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the output directory {out}: {error}") from None
    loaded = load_model(model, dtype=dtype, threads=threads)
    baseline = None
    if gguf is not None:
        from decodekit.bench.baselines.llamacpp_grammar import LlamaCppGrammar

        baseline = LlamaCppGrammar(gguf, loaded, BASELINE, n_ctx=_context(loaded, rows, max_new_tokens))
    start = time.perf_counter()
    result = run_suite(loaded, rows, names, max_new_tokens, progress=lambda line: print(line, file=sys.stderr),
                       whitespace=whitespace, baseline=baseline)
    command = ["decodekit", "bench-json", str(schemas), "--methods", methods, "--model", model, "--max-new-tokens",
               str(max_new_tokens), "--dtype", dtype, "--whitespace", whitespace]
    command += ["--per-category", str(per_category)] if per_category is not None else []
    command += ["--threads", str(threads)] if threads is not None else []
    meta = {"command": shlex.join(command), "suite": str(schemas),
            "schemas": len(rows), "per_category": per_category, "model": loaded.name, "precision": loaded.precision,
            **backend_description(loaded.backend), "device": str(loaded.device), **cpu_description(),
            "threads": torch.get_num_threads(), "max_new_tokens": max_new_tokens, "whitespace": whitespace,
            "baseline": BASELINE if baseline is not None else None, "seconds": round(time.perf_counter() - start, 1),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "decodekit": __version__}
    summary = summarize(result, meta)
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomically(out / "report.md", render_report(summary))
    print(table(summary))
    for schema_id, reason in result.unsupported:
        print(f"unsupported: {schema_id}: {reason}")
    for schema_id, reason in result.baseline_unsupported:
        print(f"{BASELINE} cannot take: {schema_id}: {reason}")
    print(f"{len(rows)} schemas, {len(result.unsupported)} unsupported; {meta['seconds']:.0f} s; model "
          f"{loaded.name} {loaded.precision}; wrote {out}/ (summary.json, report.md)")


def _baseline_gguf(model: str) -> Path:
    """The GGUF file llama.cpp's grammar baseline runs on, or a UserError before anything loads."""
    from decodekit.bench.baselines.llamacpp import gguf_file, llamacpp_missing

    missing = llamacpp_missing()
    if missing is not None:
        raise UserError(f"{BASELINE} does not run: {missing}")
    path = gguf_file(model)
    if path is None:
        raise UserError(f"{BASELINE} runs on a GGUF file: give a catalog model or a .gguf file, not {model!r}")
    return path


def _context(loaded, rows, max_new_tokens: int) -> int:
    from decodekit.bench.jsonschema_suite import prompt_ids

    return max(len(prompt_ids(loaded, row)) for row in rows) + max_new_tokens + 8
