"""`decodekit bench`: run a suite through several methods and write the results, or compare
two earlier runs. Everything a user can get wrong (suite, method, category, option) is checked before the
model loads; such a mistake prints one line and exits with code 2. Code suites' replies are checked in the
sandbox after the generations; `--ray [ADDRESS]` runs chunks of problems as Ray tasks (bench/distributed.py;
a bare `--ray` means `local`, see `bare_ray_flag`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from decodekit.cli.options import stdout_console
from decodekit.defaults import NUM_DRAFT
from decodekit.errors import UserError
from decodekit.option_values import parse_options
from decodekit.models.catalog import DEFAULT_MODEL


def bench(
    suite: Annotated[str, typer.Option(
        help="quick, humaneval, specbench, parallel (diffusion LMs), or a JSONL file: Spec-Bench, MBPP or HumanEval "
             "format (told by its keys; code problems are run in a sandbox for pass@1)")] = "quick",
    methods: Annotated[str, typer.Option(
        help="comma-separated decodekit methods and baselines (hf, hf-pld, hf-assisted, llamacpp, llamacpp-pld, "
             "llamacpp-spec); "
             "all = every decodekit method, hf, hf-pld, and the others where they can run. ar always runs. "
             "NAME:KEY=VALUE gives one method its own options (uscd:drafter=pld beside uscd)")] = "all",
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = DEFAULT_MODEL,
    max_new_tokens: Annotated[int, typer.Option(help="most tokens per answer")] = 256,
    limit: Annotated[Optional[int], typer.Option(help="the first N prompts of each category")] = None,
    categories: Annotated[Optional[str], typer.Option(help="comma-separated categories to run")] = None,
    repeat: Annotated[int, typer.Option(help="runs per generation; the median time is kept")] = 1,
    turns: Annotated[str, typer.Option(help="first, or all (later turns follow each method's own answers)")] = "first",
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    seed: Annotated[Optional[int], typer.Option(help="sampling seed, the same for every generation")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output directory (default bench-out/SUITE-TIME)")] = None,
    draft_model: Annotated[Optional[str], typer.Option(
        help="draft model for hf-assisted, llamacpp-spec and decodekit's draft")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        help="a decodekit method option KEY=VALUE (repeatable), given to every chosen method that takes it")] = None,
    num_draft: Annotated[int, typer.Option(help="most draft tokens per step (decodekit methods)")] = NUM_DRAFT,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, or q4 (4-bit GGUF weights)")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (torch and llama.cpp)")] = None,
    backend: Annotated[str, typer.Option(help="auto, lean, transformers, or llamacpp (GGUF on llama.cpp)")] = "auto",
    view: Annotated[Optional[str], typer.Option(
        help="question ids to show in viewer.html (comma-separated, or all; default: the first of each "
             "category)")] = None,
    n: Annotated[Optional[int], typer.Option(help="--suite parallel: instances per task (default 20)")] = None,
    check_seconds: Annotated[float, typer.Option(
        help="code suites: wall-clock limit of one reply's test run in the sandbox")] = 10.0,
    ray: Annotated[Optional[str], typer.Option(
        help="run chunks of problems as Ray tasks (every method of a chunk on one worker): local (a bare --ray), "
             "auto, or a cluster address; needs the ray extra", metavar="[ADDRESS]")] = None,
    ray_chunk: Annotated[int, typer.Option(help="--ray: problems per Ray task")] = 8,
    compare: Annotated[Optional[tuple[Path, Path]], typer.Option(
        help="compare two earlier runs' directories instead of running", metavar="DIR1 DIR2")] = None,
) -> None:
    """Benchmark decoding methods on a suite in one process, or compare two runs (--compare DIR1 DIR2)."""
    if compare is not None:
        _compare(*compare)
    elif suite == "parallel":  # the masked diffusion suite (decodekit.diffusion)
        from decodekit.diffusion.command import bench_command

        bench_command(model, seed, n, out, methods, parse_options(option or []), 32, threads)
    else:
        _bench(suite, methods, model, max_new_tokens, limit, categories, repeat, turns, temperature, seed, out,
               draft_model, option or [], num_draft, dtype, threads, view, backend, check_seconds, ray, ray_chunk)


def _compare(first: Path, second: Path) -> None:
    from decodekit.bench.compare import compare, print_comparison, read_summary

    print_comparison(compare(read_summary(first), read_summary(second)), first, second, stdout_console())


def _bench(suite_spec, methods, model, max_new_tokens, limit, categories, repeat, turns, temperature, seed, out,
           draft_model, option, num_draft, dtype, threads, view, backend="auto", check_seconds=10.0, ray=None,
           ray_chunk=8) -> None:
    from rich.console import Console

    from decodekit import __version__
    from decodekit.bench.metrics import summarize
    from decodekit.bench.plan import BenchSettings, plan_methods
    from decodekit.bench.report.console import print_table
    from decodekit.bench.report.viewer import write_viewer
    from decodekit.bench.report.write import write_report
    from decodekit.bench.suites import load_suite
    from decodekit.sampling import SamplingConfig

    errors = Console(stderr=True)
    if not check_seconds > 0:
        raise UserError(f"--check-seconds must be positive, got {check_seconds}")
    if ray is not None:
        from decodekit.bench.distributed import ray_module

        if ray_chunk < 1:
            raise UserError(f"--ray-chunk must be at least 1, got {ray_chunk}")
        ray_module()  # without Ray installed: one line, before anything loads
    sampling = SamplingConfig(temperature=temperature, seed=seed)
    settings = BenchSettings(max_new_tokens, repeat, turns, sampling, num_draft, draft_model, dtype)
    options = parse_options(option)
    plans, skipped = plan_methods(methods, options, draft_model, model)
    loaded_suite = load_suite(suite_spec)
    for problem in loaded_suite.problems:
        errors.print(f"decodekit: {problem}", markup=False, highlight=False)
    wanted = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    chosen = loaded_suite.select(wanted, limit)
    out = out or Path("bench-out") / f"{Path(chosen.name).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the output directory {out}: {error}") from None

    for name, why in skipped.items():
        errors.print(f"decodekit: {name} does not run: {why}", markup=False, highlight=False)

    if ray is not None:
        records, unset, notices, worker = _bench_on_ray(ray, ray_chunk, chosen, plans, settings, model, dtype,
                                                        backend, threads, check_seconds, errors)
        for message in notices:
            errors.print(f"decodekit: {message}", markup=False, highlight=False)
        names = [name for name in worker.get("methods", []) if name not in unset]
        machine = {k: worker.get(k) for k in ("model", "dtype", "device", "backend", "cpu", "cpu_family", "cpu_model",
                                                "cpu_flags", "threads")
                   if k in worker}
        machine["ray"] = {"address": ray, "chunk_size": ray_chunk, "hosts": worker["hosts"]}
    else:
        records, unset, names, machine = _bench_here(chosen, plans, settings, model, dtype, backend, threads,
                                                     check_seconds, errors)
    for name, why in unset.items():
        errors.print(f"decodekit: {name} does not run: {why}", markup=False, highlight=False)
    skipped.update(unset)

    meta = {
        **machine, "suite": chosen.name, "max_new_tokens": max_new_tokens,
        "prompts": len(chosen.prompts), "categories": chosen.categories, "turns": turns, "repeat": repeat,
        "temperature": temperature, "seed": seed, "num_draft": num_draft, "draft_model": draft_model,
        "method_options": {p.label: p.options for p in plans if p.options}, "skipped": skipped,
        "problems": loaded_suite.problems, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "decodekit": __version__,
    }
    summary = summarize(records, meta, names)
    with (out / "results.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_report(summary, records, out)
    write_viewer(records, summary, out / "viewer.html", view)
    print_table(summary, stdout_console())
    plots = "speedup.png, accepted.png" + (", pass_at_1.png" if (out / "pass_at_1.png").exists() else "")
    errors.print(f"decodekit: wrote {out}/ (report.md, summary.json, results.jsonl, {plots}, viewer.html)",
                 markup=False, highlight=False)


def _bench_here(chosen, plans, settings, model, dtype, backend, threads, check_seconds, errors):
    """The run in this process, with a progress bar: (records, unset methods, method names, machine meta)."""
    import torch

    from decodekit.bench.conversation import context_needed
    from decodekit.bench.machine import backend_description, cpu_description
    from decodekit.bench.run import build_contenders, close_contenders
    from decodekit.session import Session

    session = Session()
    loaded = session.model(model, dtype=dtype, threads=threads, backend=backend)
    n_ctx = context_needed(loaded, chosen, settings)
    contenders, unset = build_contenders(session, loaded, model, plans, settings, n_ctx)
    try:
        rows = _run_with_progress(session, loaded, chosen, contenders, settings, check_seconds, errors)
    finally:
        close_contenders(contenders)
    machine = {"model": loaded.name, "dtype": loaded.precision, "device": str(loaded.device),
               **backend_description(loaded.backend), **cpu_description(), "threads": torch.get_num_threads()}
    return [row.to_json() for row in rows], unset, list(contenders), machine


def _run_with_progress(session, loaded, chosen, contenders, settings, check_seconds, errors):
    """Every generation of the run, then the sandbox's checks of code replies, under a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from decodekit.bench.code_eval.sandbox import Limits
    from decodekit.bench.code_eval.score import count_checks, score_rows
    from decodekit.bench.run import count_generations, run_suite

    total = count_generations(chosen, len(contenders), settings) + len(contenders)
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, transient=False) as progress:
        task = progress.add_task("bench", total=total)
        started = 0
        shown = ""

        def advance(label: str) -> None:
            """Called as each generation starts; without a terminal (no live bar), one line per prompt."""
            nonlocal started, shown
            progress.update(task, completed=started, description=label[:28])
            started += 1
            prompt = label.split(" ")[0]
            if not errors.is_terminal and prompt != shown:
                shown = prompt
                errors.print(f"decodekit: [{started}/{total}] {label}", markup=False, highlight=False)

        def notice(message: str) -> None:
            progress.console.print(f"decodekit: {message}", markup=False, highlight=False)

        rows = run_suite(session, loaded, chosen, contenders, settings, advance, notice)
        progress.update(task, completed=total, description="done")
        checks = count_checks(rows, chosen)
        if checks:
            checking = progress.add_task("sandbox", total=checks)
            rows = score_rows(rows, chosen, Limits(seconds=check_seconds),
                              lambda label: progress.advance(checking))
    return rows


def _bench_on_ray(address, chunk_size, chosen, plans, settings, model, dtype, backend, threads, check_seconds,
                  errors):
    """The run as Ray tasks, one per chunk of problems: (records, unset methods, notices, worker meta)."""
    from decodekit.bench.distributed import ChunkJob, chunk_prompts, merge, run_on_ray

    jobs = [ChunkJob(model, dtype, backend, threads or 1, tuple(plans), settings, chosen.name, chunk, check_seconds)
            for chunk in chunk_prompts(chosen.prompts, chunk_size)]
    errors.print(f"decodekit: {len(chosen.prompts)} prompts in {len(jobs)} Ray tasks of at most {chunk_size}",
                 markup=False, highlight=False)

    def progress(done: int, total: int) -> None:
        errors.print(f"decodekit: [{done}/{total}] Ray tasks done", markup=False, highlight=False)

    return merge(run_on_ray(jobs, address, progress))


def bare_ray_flag(args: list[str]) -> list[str]:
    """The command line with a bare `--ray` (last, or followed by another option) given its default,
    `local`: typer options take a value, and `--ray [ADDRESS]` makes the address optional."""
    fixed = []
    for index, arg in enumerate(args):
        fixed.append(arg)
        following = args[index + 1] if index + 1 < len(args) else None
        if arg == "--ray" and (following is None or following.startswith("-")):
            fixed.append("local")
    return fixed
