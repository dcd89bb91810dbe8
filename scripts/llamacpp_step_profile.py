"""Where one decoding step's time goes on the llama.cpp backend: inside llama_decode, in the backend's Python
around it (checks, the batch, the logits copy), and in the rest of the step (drafting, verification, the cache
edits, the sampler, the output).

    python scripts/llamacpp_step_profile.py [--method ar] [--max-new-tokens 128] [--threads N] [--prompt TEXT]

It generates once to warm up, then once measured, timing every llama_decode call (a wrapper round the ctypes
function) and every backend forward; the prefill is left out.
"""

from __future__ import annotations

import argparse
import time

from decodekit.api import generate
from decodekit.models import load_model
from decodekit.session import Session

PROMPT = "Explain what a hash table is, how collisions are handled, and when to use one instead of a list."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="ar")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args()
    model = load_model("smollm2-135m", backend="llamacpp", threads=args.threads)
    backend = model.backend
    C = backend.C
    clocks = {"decode": [], "forward": []}
    decode, forward = C.llama_decode, backend.forward_batch

    def timed_decode(ctx, batch):
        start = time.perf_counter()
        try:
            return decode(ctx, batch)
        finally:
            clocks["decode"].append(time.perf_counter() - start)

    def timed_forward(sequences):
        start = time.perf_counter()
        try:
            return forward(sequences)
        finally:
            clocks["forward"].append(time.perf_counter() - start)

    session = Session()
    generate(args.prompt, model, method=args.method, max_new_tokens=args.max_new_tokens, session=session)
    C.llama_decode, backend.forward_batch = timed_decode, timed_forward
    try:
        result = generate(args.prompt, model, method=args.method, max_new_tokens=args.max_new_tokens,
                          session=session)
    finally:
        C.llama_decode, backend.forward_batch = decode, forward
    steps = len(result.steps)
    decoding = sum(clocks["decode"][1:])  # [0] is the prefill's
    forwards = sum(clocks["forward"][1:])
    stepping = result.seconds - result.prefill_seconds
    drafting = sum(s.draft_seconds for s in result.steps)
    print(f"{args.method}: {len(result.token_ids)} tokens in {steps} steps, threads {backend.threads}")
    per = 1e3 / steps
    print(f"  one step           {stepping * per:7.2f} ms")
    print(f"  llama_decode       {decoding * per:7.2f} ms")
    print(f"  backend Python     {(forwards - decoding) * per:7.2f} ms  (checks, batch, logits copy)")
    print(f"  drafting           {drafting * per:7.2f} ms")
    print(f"  rest of the step   {(stepping - forwards - drafting) * per:7.2f} ms  (verification, keep, sampler, output)")


if __name__ == "__main__":
    main()
