"""`decodekit generate`: text from a prompt with a decoding method, streamed or as one JSON object."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from decodekit.defaults import NUM_DRAFT
from decodekit.errors import UserError
from decodekit.option_values import parse_options
from decodekit.models.catalog import DEFAULT_MODEL


def generate(
    prompt: Annotated[str, typer.Argument(help="the prompt; - reads standard input")],
    model: Annotated[str, typer.Option(help="catalog name, .gguf file, model directory or hub id")] = DEFAULT_MODEL,
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
    json_schema: Annotated[Optional[str], typer.Option(help="constrain to a JSON schema: a file or JSON text")] = None,
    json_value: Annotated[bool, typer.Option("--json-value", help="constrain to any JSON value")] = False,
    regex: Annotated[Optional[str], typer.Option(help="constrain the whole output to a regular expression")] = None,
    grammar: Annotated[Optional[str], typer.Option(help="constrain to a Lark grammar file (llguidance's Lark)")] = None,
) -> None:
    """Generate text from PROMPT."""
    _generate(**locals())


def _generate(prompt, model, method, max_new_tokens, temperature, top_k, top_p, min_p, typical_p,
              epsilon_cutoff, eta_cutoff, repetition_penalty, seed, stop, num_draft, draft_model, corpus,
              skip_layers, option, dtype, threads, backend, raw, as_json, trace, json_schema=None, json_value=False,
              regex=None, grammar=None) -> None:
    from decodekit.api import generate as run_generate
    from decodekit.constrain import grammar_from_options
    from decodekit.core.request import check_request
    from decodekit.methods import get_method
    from decodekit.models import load_model
    from decodekit.sampling import SamplingConfig

    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise UserError("the prompt is empty")
    from decodekit.diffusion.catalog import is_diffusion_model

    if is_diffusion_model(model):  # masked diffusion LMs have their own loop and methods
        from decodekit.diffusion.command import generate_command

        return generate_command(prompt, model, method, parse_options(option or []), seed, threads, as_json)
    sampling = SamplingConfig(temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff,
                              repetition_penalty, seed)
    options = parse_options(option or [])
    options.update({k: v for k, v in
                    (("draft_model", draft_model), ("corpus", corpus), ("skip_layers", skip_layers)) if v})
    get_method(method, options)
    check_request(max_new_tokens, sampling, tuple(stop or ()), num_draft)  # fail before loading
    constraint = grammar_from_options(json_schema, json_value, regex, grammar)
    loaded = load_model(model, dtype=dtype, threads=threads, backend=backend)
    kwargs = dict(method=method, max_new_tokens=max_new_tokens, sampling=sampling, stop=tuple(stop or ()),
                  chat=False if raw else None, num_draft=num_draft, constraint=constraint, **options)
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
        f"finish: {decoding.result.finish_reason}"
        + ("" if decoding.result.complete is None else f" ({'complete' if decoding.result.complete else 'incomplete'})")
        + f"; model {loaded.name} {loaded.precision}",
        file=sys.stderr,
    )
