"""Where one target forward's time goes on the embedded model: the backend load_model picks (lean, with packed
weights in float32, or over 4-bit weights with --dtype q4), the lean backend over plain weights, and the
transformers backend.

    python scripts/step_profile.py [--sizes 1,8,16] [--repeats 20] [--dtype float32|bfloat16|q4] [--threads N]

For each number of new tokens (over a 256-token context, a causal mask over the new ones, as a draft tree's
verification has), the best wall time of `--repeats` forwards, then a torch.profiler breakdown of the same
forward by operation kind: matrix products (linear and the packed MKL ones), attention, and the rest.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from decodekit.models import load_model
from decodekit.models.backend_hf import TransformersBackend
from decodekit.models.backend_lean import LeanLlamaBackend

CONTEXT = 256
KINDS = {"aten::addmm": "products", "aten::mm": "products", "mkl::_mkl_linear": "products",
         "aten::_weight_int4pack_mm_for_cpu": "products",
         "aten::linear": None, "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
         "aten::scaled_dot_product_attention": None}


def forward_once(backend, cache, size: int) -> None:
    tokens = (torch.arange(size) * 7 + 3) % 1000
    mask = torch.ones(size, size, dtype=torch.bool).tril() if size > 1 else None
    backend.forward(tokens, CONTEXT + torch.arange(size), cache, mask)
    cache.truncate(CONTEXT)


def breakdown(backend, cache, size: int) -> dict[str, float]:
    """Self CPU milliseconds per kind of operation in one forward."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward_once(backend, cache, size)
    kinds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        kind = KINDS.get(event.key, "other ops")
        if kind is not None:
            kinds[kind] += event.self_cpu_time_total / 1000
    return dict(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,16")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    model = load_model("smollm2-135m", dtype=args.dtype, threads=args.threads)
    chosen = f"{model.backend.name}{'-packed' if model.backend.packed_rows else ''}"
    backends = {chosen: model.backend, "lean-plain": LeanLlamaBackend(model.model, pack=False),
                "transformers": TransformersBackend(model.model)}
    print(f"{model.name} {args.dtype}, {torch.get_num_threads()} threads, {CONTEXT}-token context; "
          f"packed rows: {model.backend.packed_rows or 'none'}")
    for name, backend in backends.items():
        cache = backend.new_cache()
        backend.forward(torch.arange(CONTEXT) % 1000, torch.arange(CONTEXT), cache, last=1)
        for size in (int(s) for s in args.sizes.split(",")):
            forward_once(backend, cache, size)
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                forward_once(backend, cache, size)
                best = min(best, time.perf_counter() - start)
            parts = breakdown(backend, cache, size)
            detail = ", ".join(f"{kind} {ms:.1f}" for kind, ms in sorted(parts.items(), key=lambda kv: -kv[1]))
            print(f"{name:12s} {size:3d} new tokens: best {best * 1000:.1f} ms; profiled ms: {detail}")


if __name__ == "__main__":
    main()
