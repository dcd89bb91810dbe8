"""`decodekit bench --ray [ADDRESS]`: a bench run split into chunks of consecutive problems, each chunk one
Ray task that loads the model, runs every method on the chunk's problems (warm-up included) and checks code
replies in the sandbox, all on the same worker, so each speed ratio compares methods on one machine.

Rules and defaults:
- chunks hold `chunk_size` consecutive prompts of the selected suite (default 8); the rows come back in
  problem order (chunk by chunk, each chunk's rows in its own order), as a single-process run writes them.
- each task asks Ray for `threads` CPUs (default 1) and runs torch on that many threads.
- ADDRESS: `local` (what a bare `--ray` means: a Ray started for this run on this machine), `auto` (a
  running cluster that `ray start` made here) or a cluster address (`ray://HOST:10001`, `HOST:6379`).
  Workers of a cluster need decodekit (and the model, or its catalog download) installed.
- Methods that learn across prompts (ngram, recycle, hybrid, auto) learn within their chunk only: their
  numbers depend on the chunk size; stateless methods give the same tokens as a single-process run.
- `run_chunk` is an ordinary function: a single process can run a chunk (the tests compare both).
Ray is an optional extra (`pip install 'decodekit[ray]'`); without it, --ray is a one-line error.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from decodekit.bench.plan import BenchSettings, MethodPlan
from decodekit.bench.suites import Prompt, Suite
from decodekit.errors import UserError

DEFAULT_CHUNK = 8


@dataclass(frozen=True)
class ChunkJob:
    model: str
    dtype: str
    backend: str
    threads: int
    plans: tuple[MethodPlan, ...]
    settings: BenchSettings
    suite_name: str
    prompts: tuple[Prompt, ...]
    check_seconds: float = 10.0


@dataclass
class ChunkResult:
    records: list[dict]  # results rows as results.jsonl holds them
    unset: dict[str, str] = field(default_factory=dict)  # methods that could not be set up: why
    notices: list[str] = field(default_factory=list)  # failures the run recorded and went on from
    meta: dict = field(default_factory=dict)  # the worker's model, device and machine


def chunk_prompts(prompts: list[Prompt], size: int) -> list[tuple[Prompt, ...]]:
    if size < 1:
        raise UserError(f"--ray-chunk must be at least 1, got {size}")
    return [tuple(prompts[i:i + size]) for i in range(0, len(prompts), size)]


def run_chunk(job: ChunkJob) -> ChunkResult:
    """Every method over the chunk's prompts in one process, then the sandbox checks of its code replies."""
    import torch

    from decodekit.bench.code_eval.sandbox import Limits
    from decodekit.bench.code_eval.score import score_rows
    from decodekit.bench.conversation import context_needed
    from decodekit.bench.machine import backend_description, cpu_description
    from decodekit.bench.run import build_contenders, close_contenders, run_suite
    from decodekit.session import Session

    torch.set_num_threads(job.threads)
    session = Session()
    loaded = session.model(job.model, dtype=job.dtype, threads=job.threads, backend=job.backend)
    suite = Suite(job.suite_name, list(job.prompts))
    n_ctx = context_needed(loaded, suite, job.settings)
    contenders, unset = build_contenders(session, loaded, job.model, list(job.plans), job.settings, n_ctx)
    notices: list[str] = []
    try:
        rows = run_suite(session, loaded, suite, contenders, job.settings, notice=notices.append)
    finally:
        close_contenders(contenders)
    rows = score_rows(rows, suite, Limits(seconds=job.check_seconds))
    meta = {"model": loaded.name, "dtype": loaded.precision, "device": str(loaded.device),
            **backend_description(loaded.backend), **cpu_description(), "threads": torch.get_num_threads(),
            "host": socket.gethostname(), "methods": list(contenders)}
    return ChunkResult([row.to_json() for row in rows], unset, notices, meta)


def ray_module():
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray, an optional extra: pip install 'decodekit[ray]'") from None
    return ray


def run_on_ray(jobs: list[ChunkJob], address: str = "local",
               progress: Callable[[int, int], None] = lambda done, total: None) -> list[ChunkResult]:
    """Each job as a Ray task; the results in the jobs' order. `progress(done, total)` after each task."""
    ray = ray_module()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address == "local":
                ray.init(include_dashboard=False, logging_level="WARNING")
            else:
                ray.init(address=address, logging_level="WARNING")
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise UserError(f"cannot reach the Ray cluster at {address!r}: {error}") from None
    try:
        task = ray.remote(run_chunk)
        refs = [task.options(num_cpus=job.threads).remote(job) for job in jobs]
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            progress(len(refs) - len(waiting), len(refs))
        return ray.get(refs)
    finally:
        if started_here:
            ray.shutdown()


def merge(results: list[ChunkResult]) -> tuple[list[dict], dict[str, str], list[str], dict]:
    """The chunks' rows in problem order, the methods some worker could not set up, every notice, and the
    first worker's meta (with the hosts of all of them)."""
    records = [record for result in results for record in result.records]
    unset: dict[str, str] = {}
    for result in results:
        unset.update(result.unset)
    notices = [notice for result in results for notice in result.notices]
    meta = dict(results[0].meta) if results else {}
    meta["hosts"] = sorted({r.meta.get("host", "") for r in results})
    return records, unset, notices, meta
