"""`decodekit bench-serve`: the server under 1, 2, 4, 8 concurrent streaming clients, measured from outside.

It starts `python -m decodekit serve` as a subprocess on a free loopback port (the model, dtype and method
given), sends one warm-up request, then for each concurrency level c sends `requests` prompts from c client
threads, each a streamed greedy chat completion of up to `max_tokens` tokens (the count comes from each
response's usage). The prompts are the built-in `PROMPTS` (cycled), or the first turns of a bench suite's
prompts (`suite`: quick, specbench or a Spec-Bench-format file), taken from each category in turn so that
a level of 8 requests mixes short questions with long summarisation and retrieval prompts.
Per level: aggregate output tokens per second (all tokens over the level's wall time), time to first token
(submission to the first content chunk) and time per output token after the first (TPOT: (last chunk - first
chunk) / (tokens - 1), the mean inter-token latency of a request), p50 and p95 over requests. One run, no
repeats: the figures are this machine's at that moment. Writes a JSON file, a markdown table and a plot of
throughput against concurrency.

With `baseline="llama-server"` (bench/baselines/llama_server.py), llama.cpp's own server then runs the same
levels on the model's GGUF file, and the table gives decodekit's aggregate tokens/s over llama-server's at
each level.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from decodekit.bench.machine import cpu_description
from decodekit.errors import UserError
from decodekit.bench import server_process as process

PROMPTS = (
    "Explain how a bicycle stays upright.",
    "Write a short story about a lighthouse keeper.",
    "List the planets of the solar system with one fact each.",
    "What are the main causes of the seasons on Earth?",
    "Describe how to make a cup of tea, step by step.",
    "Summarise the water cycle for a ten-year-old.",
    "Give three tips for learning a new language.",
    "Why is the sky blue?",
)
LEVELS = (1, 2, 4, 8)
PROMPT_ROOM = 4096  # llama-server's context per client slot beyond max_tokens, for the prompt


@dataclass
class Sample:
    first_token: float  # seconds from sending to the first content chunk
    seconds: float  # from sending to the end of the stream
    tokens: int
    tpot: float | None  # seconds per output token after the first


@dataclass
class Level:
    concurrency: int
    requests: int
    tokens: int
    seconds: float
    tokens_per_second: float
    ttft_p50: float
    ttft_p95: float
    tpot_p50: float
    tpot_p95: float


def stream_chat(port: int, model: str, prompt: str, max_tokens: int, timeout: float = 600) -> Sample:
    """One streamed greedy chat completion; the token count comes from the stream's usage (both servers send
    it when asked), so a stream that ends without it is an error, not a guess."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    start = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise UserError(f"the server answered {response.status}: {response.read()[:300].decode(errors='replace')}")
    first = last = None
    tokens = None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        if "error" in event:
            raise UserError(f"the stream failed: {event['error'].get('message')}")
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        if event.get("choices") and event["choices"][0].get("delta", {}).get("content"):
            last = time.perf_counter()
            first = first or last
    end = time.perf_counter()
    connection.close()
    if tokens is None:
        raise UserError("a stream ended without its usage (completion_tokens): it was cut short")
    if first is None:
        first = last = end
    tpot = (last - first) / (tokens - 1) if tokens > 1 else None
    return Sample(first - start, end - start, tokens, tpot)


def suite_prompts(spec: str) -> list[str]:
    """The first turns of a bench suite's prompts, one category after another in turn (the first prompt of
    each category, then the second of each, ...)."""
    from decodekit.bench.suites import load_suite

    suite = load_suite(spec)
    if not suite.prompts:
        raise UserError(f"suite {spec!r} has no prompts" + (f": {suite.problems[0]}" if suite.problems else ""))
    by_category: dict[str, list[str]] = {}
    for prompt in suite.prompts:
        by_category.setdefault(prompt.category, []).append(prompt.turns[0])
    columns = list(by_category.values())
    return [column[i] for i in range(max(map(len, columns), default=0)) for column in columns if i < len(column)]


def measure_level(port: int, model: str, concurrency: int, requests: int, max_tokens: int,
                  prompt_set: list[str]) -> Level:
    prompts = [prompt_set[i % len(prompt_set)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        samples = list(pool.map(lambda p: stream_chat(port, model, p, max_tokens), prompts))
    seconds = time.perf_counter() - start
    tokens = sum(s.tokens for s in samples)
    ttft = [s.first_token for s in samples]
    tpot = [s.tpot for s in samples if s.tpot is not None] or [float("nan")]
    return Level(concurrency, requests, tokens, round(seconds, 3), round(tokens / seconds, 2),
                 *(round(float(np.percentile(values, q)), 4) for values in (ttft, tpot) for q in (50, 95)))


def start_server(model: str, dtype: str, method: str, max_batch: int, threads: int, log: Path
                 ) -> tuple[subprocess.Popen, int]:
    port = process.free_port()
    command = [sys.executable, "-m", "decodekit", "serve", "--model", model, "--dtype", dtype, "--method", method,
               "--port", str(port), "--max-batch", str(max_batch), "--max-queue", "64", "--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "DECODEKIT_API_KEY"}
    return process.start(command, port, log, "the server", env=env), port


def markdown(rows: list[Level], title: str, baseline: list[Level] | None = None, baseline_name: str = "") -> str:
    """The table of one server's levels; with `baseline`, that server's levels too and the ratio of
    aggregate tokens/s at each concurrency."""
    header = ("| concurrency | requests | tokens | seconds | tokens/s | TTFT p50 (s) | TTFT p95 (s) | TPOT p50 (ms) | "
              "TPOT p95 (ms) |")
    lines = [f"{title}", "", header, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_level_line(r) for r in rows]
    if baseline:
        lines += ["", f"{baseline_name}, the same clients and prompts:", "", header,
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [_level_line(r) for r in baseline]
        lines += ["", f"| concurrency | decodekit tokens/s | {baseline_name} tokens/s | ratio |", "|---:|---:|---:|---:|"]
        lines += [f"| {a.concurrency} | {a.tokens_per_second:.1f} | {b.tokens_per_second:.1f} | "
                  + (f"{a.tokens_per_second / b.tokens_per_second:.2f}x |" if b.tokens_per_second else "— |")
                  for a, b in zip(rows, baseline)]
    return "\n".join(lines) + "\n"


def _level_line(r: Level) -> str:
    return (f"| {r.concurrency} | {r.requests} | {r.tokens} | {r.seconds:.1f} | {r.tokens_per_second:.1f} | "
            f"{r.ttft_p50:.2f} | {r.ttft_p95:.2f} | {r.tpot_p50 * 1000:.0f} | {r.tpot_p95 * 1000:.0f} |")


def plot(series: dict[str, list[Level]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, rows in series.items():
        axis.plot([r.concurrency for r in rows], [r.tokens_per_second for r in rows], marker="o", label=name)
    levels = [r.concurrency for r in next(iter(series.values()))]
    axis.set_xscale("log", base=2)
    axis.set_xticks(levels, [str(c) for c in levels])
    axis.set_xlabel("concurrent clients")
    axis.set_ylabel("output tokens / s (all clients)")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    if len(series) > 1:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def measure_server(port: int, model: str, levels: list[int], requests: int, max_tokens: int,
                   prompt_set: list[str]) -> list[Level]:
    """One warm-up request (packed weights, first allocations), then every level in turn."""
    stream_chat(port, model, PROMPTS[0], 4)
    rows = []
    for concurrency in levels:
        rows.append(measure_level(port, model, concurrency, max(requests, concurrency), max_tokens, prompt_set))
        print(markdown(rows[-1:], "").splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def run_bench_serve(model: str, dtype: str, method: str, levels: list[int], requests: int, max_tokens: int,
                    out: Path, suite: str | None = None, baseline: str | None = None,
                    threads: int | None = None) -> tuple[list[Level], list[Level] | None]:
    """decodekit's server at each level, then (with `baseline="llama-server"`) llama.cpp's on the model's
    GGUF file with the same clients, prompts and threads (this machine's usable CPUs unless `threads`).
    Writes bench_serve.json/.md/.png into `out` (decodekit's levels as soon as they are measured, the
    baseline's added after) and the servers' logs beside them."""
    if not levels or any(c < 1 for c in levels) or requests < 1 or max_tokens < 2:
        raise UserError("bench-serve needs concurrency levels >= 1, --requests >= 1 and --max-tokens >= 2")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    if baseline not in (None, "llama-server"):
        raise UserError(f"unknown baseline {baseline!r}: the one baseline is llama-server")
    prompt_set = suite_prompts(suite) if suite is not None else list(PROMPTS)
    binary = gguf = None
    if baseline is not None:
        from decodekit.bench.baselines.llamacpp import gguf_file
        from decodekit.bench.baselines.llama_server import llama_server_binary, start_llama_server

        binary, gguf = llama_server_binary(), gguf_file(model)
        if gguf is None:
            raise UserError(f"--baseline llama-server needs a GGUF model: {model!r} is neither a GGUF file nor a "
                            "catalog model")
    threads = threads or len(os.sched_getaffinity(0))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the output directory {out}: {error}") from None
    title = (f"decodekit serve: {model} {dtype}, method {method}, {max_tokens} new tokens, prompts "
             f"{suite or 'built-in'}, {threads} threads")
    record = {"model": model, "dtype": dtype, "method": method, "max_tokens": max_tokens, "suite": suite,
              "threads": threads, **cpu_description()}
    server, port = start_server(model, dtype, method, max(levels), threads, out / "decodekit-serve.log")
    try:
        rows = measure_server(port, model, levels, requests, max_tokens, prompt_set)
    finally:
        process.stop(server)
    record["levels"] = [asdict(r) for r in rows]
    _write(out, title, record, rows, None, "")
    if baseline is None:
        return rows, None
    port = process.free_port()
    server = start_llama_server(binary, gguf, port, max(levels), max_tokens + PROMPT_ROOM, threads,
                                out / "llama-server.log")
    try:
        base_rows = measure_server(port, model, levels, requests, max_tokens, prompt_set)
    finally:
        process.stop(server)
    record["baseline"] = {"name": baseline, "gguf": str(gguf), "levels": [asdict(r) for r in base_rows]}
    _write(out, title, record, rows, base_rows, baseline)
    return rows, base_rows


def _write(out: Path, title: str, record: dict, rows: list[Level], base_rows: list[Level] | None,
           baseline: str) -> None:
    (out / "bench_serve.json").write_text(json.dumps(record, indent=2))
    (out / "bench_serve.md").write_text(markdown(rows, title, base_rows, baseline))
    plot({"decodekit": rows, **({baseline: base_rows} if base_rows else {})}, title, out / "bench_serve.png")
