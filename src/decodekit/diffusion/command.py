"""What the CLI calls for diffusion models: ``decodekit generate`` and ``decodekit bench --suite parallel``.

Both print user mistakes as ``UserError`` (raised before any model loads) and leave the output formatting
here, so the CLI's wiring is a few lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def generate_command(prompt: str, model: str, method: str, options: dict, seed: int | None, threads: int | None,
                     as_json: bool) -> None:
    from decodekit.diffusion.api import generate

    if method == "ar":  # the CLI's default method means "the default" for a diffusion model
        method = "fast-dllm"
    result = generate(prompt, model, method, options, seed if seed is not None else 0, threads or 1)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    print(result.text)
    print(f"[{method}] {len(result.tokens)} canvas positions in {result.seconds:.3f} s, {result.forward_passes} "
          f"forward passes ({result.tokens_per_step} tokens/step)"
          + (f", {result.verifier_passes} verifier passes" if result.verifier_passes else "")
          + f"; committed at pass: {' '.join(map(str, result.committed_at))}", file=sys.stderr)


def bench_command(model: str, seed: int | None, n: int | None, out: Path | None, methods: str, options: dict,
                  batch: int, threads: int | None) -> None:
    from decodekit.diffusion.bench import run_parallel_bench
    from decodekit.errors import UserError

    if options:
        raise UserError("--suite parallel runs each method with its defaults and its sweeps; --option is not used")
    chosen = None if methods in ("all", "") else [m.strip() for m in methods.split(",") if m.strip()]
    summary = run_parallel_bench(model if model != "smollm2-135m" else "dllm-testbed", seed if seed is not None else 0,
                                 n or 20, out, chosen, batch, chosen is None, threads or 1,
                                 progress=lambda line: print(f"decodekit: {line}", file=sys.stderr))
    for t in summary["targets"]:
        print(f"{'MET   ' if t['met'] else 'MISSED'} {t['target']}: {t['detail']}")
