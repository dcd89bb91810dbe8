"""The `decodekit serve` and `decodekit bench-serve` commands: options into a ServeConfig, then the server.
The web stack and the model load only when the command runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from decodekit.defaults import NUM_DRAFT
from decodekit.errors import UserError
from decodekit.models.catalog import DEFAULT_MODEL



def serve(
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = DEFAULT_MODEL,
    draft_model: Annotated[Optional[str], typer.Option(help="the draft model of method draft")] = None,
    method: Annotated[str, typer.Option(help="default decoding method (requests may pick another)")] = "auto",
    host: Annotated[str, typer.Option(help="address to bind (loopback unless told otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    max_batch: Annotated[int, typer.Option(help="most sequences stepped together")] = 8,
    max_queue: Annotated[int, typer.Option(help="most sequences waiting for a slot (then 429)")] = 32,
    api_key: Annotated[Optional[str], typer.Option(envvar="DECODEKIT_API_KEY",
                                                   help="require Authorization: Bearer KEY")] = None,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, or q4")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads")] = None,
    max_tokens: Annotated[int, typer.Option(help="most tokens one request may ask for")] = 2048,
    max_body_bytes: Annotated[int, typer.Option(help="largest request body")] = 1_000_000,
    request_timeout: Annotated[float, typer.Option(help="seconds before a request fails (504)")] = 600.0,
    shutdown_grace: Annotated[float, typer.Option(help="seconds in-flight requests get on SIGTERM")] = 30.0,
    learning: Annotated[str, typer.Option(help="request: drafters learn per request; shared: across "
                                               "requests")] = "request",
    num_draft: Annotated[int, typer.Option(help="most draft tokens per step")] = NUM_DRAFT,
    log_prompts: Annotated[bool, typer.Option("--log-prompts", help="log prompt and output text")] = False,
) -> None:
    """Serve MODEL over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)."""
    from decodekit.serve.config import ServeConfig
    from decodekit.serve.server import run_server

    config = ServeConfig(model=model, draft_model=draft_model, method=method, dtype=dtype, threads=threads,
                         host=host, port=port, max_batch=max_batch, max_queue=max_queue, api_key=api_key,
                         max_tokens=max_tokens, max_body_bytes=max_body_bytes, request_timeout=request_timeout,
                         shutdown_grace=shutdown_grace, learning=learning, num_draft=num_draft, log_prompts=log_prompts)
    run_server(config)


def bench_serve(
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = DEFAULT_MODEL,
    method: Annotated[str, typer.Option(help="the server's decoding method")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, or q4")] = "auto",
    concurrency: Annotated[str, typer.Option(help="comma-separated client counts")] = "1,2,4,8",
    requests: Annotated[int, typer.Option(help="requests per level (at least the concurrency)")] = 8,
    max_tokens: Annotated[int, typer.Option(help="new tokens per request")] = 64,
    out: Annotated[str, typer.Option(help="directory for bench_serve.json, .md and .png")] = "bench-serve",
    suite: Annotated[Optional[str], typer.Option(
        help="prompts from a bench suite (quick, specbench or a Spec-Bench-format file), each category in turn; "
             "default: the built-in prompts")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="llama-server: then llama.cpp's own server on the model's GGUF file, same clients and prompts "
             "(make llamacpp-tools builds it)")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads of each server")] = None,
) -> None:
    """Measure the server under concurrent streaming clients: tokens/s, TTFT and TPOT per concurrency level."""
    from pathlib import Path

    from decodekit.serve.bench import run_bench_serve

    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError:
        raise UserError(f"--concurrency takes numbers like 1,2,4,8, got {concurrency!r}") from None
    run_bench_serve(model, dtype, method, levels, requests, max_tokens, Path(out), suite=suite, baseline=baseline,
                    threads=threads)
    print((Path(out) / "bench_serve.md").read_text(), end="")
