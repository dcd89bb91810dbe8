"""`decodekit bench-serve`: the server under 1, 2, 4, 8 concurrent streaming clients, measured from outside.

It starts `python -m decodekit serve` as a subprocess on a free loopback port (the model, dtype and method
given), sends one warm-up request, then for each concurrency level c sends the fixed prompt set (`PROMPTS`,
`requests` of them, cycled) from c client threads, each a streamed greedy chat completion of up to
`max_tokens` tokens (the count comes from each response's usage).
Per level: aggregate output tokens per second (all tokens over the level's wall time), time to first token
(submission to the first content chunk) and time per output token after the first (TPOT: (last chunk - first
chunk) / (tokens - 1), the mean inter-token latency of a request), p50 and p95 over requests. One run, no
repeats: the figures are this machine's at that moment. Writes a JSON file, a markdown table and a plot of
throughput against concurrency.

No llama-server baseline: llama.cpp's server is not built on this project's machines.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from decodekit.errors import UserError

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_chat(port: int, model: str, prompt: str, max_tokens: int, method: str | None = None,
                timeout: float = 600) -> Sample:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if method is not None:
        body["decodekit"] = {"method": method}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    start = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"the server answered {response.status}: {response.read()[:300]!r}")
    first = last = None
    tokens = 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        if "error" in event:
            raise RuntimeError(f"the stream failed: {event['error']['message']}")
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        if event["choices"] and event["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            first = first or last
    end = time.perf_counter()
    connection.close()
    if first is None:
        first = last = end
    tpot = (last - first) / (tokens - 1) if tokens > 1 else None
    return Sample(first - start, end - start, tokens, tpot)


def measure_level(port: int, model: str, concurrency: int, requests: int, max_tokens: int) -> Level:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        samples = list(pool.map(lambda p: stream_chat(port, model, p, max_tokens), prompts))
    seconds = time.perf_counter() - start
    tokens = sum(s.tokens for s in samples)
    ttft = [s.first_token for s in samples]
    tpot = [s.tpot for s in samples if s.tpot is not None] or [float("nan")]
    return Level(concurrency, requests, tokens, round(seconds, 3), round(tokens / seconds, 2),
                 *(round(float(np.percentile(values, q)), 4) for values in (ttft, tpot) for q in (50, 95)))


def start_server(model: str, dtype: str, method: str, max_batch: int, extra: list[str]) -> tuple[subprocess.Popen,
                                                                                                   int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "decodekit", "serve", "--model", model, "--dtype", dtype,
                                "--method", method, "--port", str(port), "--max-batch", str(max_batch),
                                "--max-queue", "64", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={k: v for k, v in os.environ.items() if k != "DECODEKIT_API_KEY"})
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"the server exited: {process.stderr.read().decode(errors='replace')[-500:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise UserError("the server did not start within 10 minutes")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def markdown(rows: list[Level], title: str) -> str:
    lines = [f"{title}", "", "| concurrency | requests | tokens | seconds | tokens/s | TTFT p50 (s) | TTFT p95 (s) | "
             "TPOT p50 (ms) | TPOT p95 (ms) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.concurrency} | {r.requests} | {r.tokens} | {r.seconds:.1f} | {r.tokens_per_second:.1f} | "
                     f"{r.ttft_p50:.2f} | {r.ttft_p95:.2f} | {r.tpot_p50 * 1000:.0f} | {r.tpot_p95 * 1000:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[Level], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot([r.concurrency for r in rows], [r.tokens_per_second for r in rows], marker="o")
    axis.set_xscale("log", base=2)
    axis.set_xticks([r.concurrency for r in rows], [str(r.concurrency) for r in rows])
    axis.set_xlabel("concurrent clients")
    axis.set_ylabel("output tokens / s (all clients)")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_bench_serve(model: str, dtype: str, method: str, levels: list[int], requests: int, max_tokens: int,
                    out: Path, extra: list[str] | None = None) -> list[Level]:
    if not levels or any(c < 1 for c in levels) or requests < 1 or max_tokens < 2:
        raise UserError("bench-serve needs concurrency levels >= 1, --requests >= 1 and --max-tokens >= 2")
    process, port = start_server(model, dtype, method, max(levels), list(extra or []))
    try:
        stream_chat(port, model, PROMPTS[0], 4)  # warm-up: packed weights, first allocations
        rows = []
        for concurrency in levels:
            rows.append(measure_level(port, model, concurrency, max(requests, concurrency), max_tokens))
            print(markdown(rows[-1:], "").splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        stop_server(process)
    out.mkdir(parents=True, exist_ok=True)
    title = f"decodekit serve: {model} {dtype}, method {method}, {max_tokens} new tokens"
    (out / "bench_serve.json").write_text(json.dumps({"model": model, "dtype": dtype, "method": method,
                                                      "max_tokens": max_tokens,
                                                      "levels": [asdict(r) for r in rows]}, indent=2))
    (out / "bench_serve.md").write_text(markdown(rows, title))
    plot(rows, title, out / "bench_serve.png")
    return rows
