"""How long reading a prompt takes (one forward over its tokens, the last row's logits), per precision.

    python scripts/prompt_read_timing.py [--model NAME] [--dtypes q4,bfloat16] [--sizes 16,32,64,128,256]
                                         [--threads 1]

Each size is the best of 3 forwards into a fresh cache, as `prefill` reads a prompt (speculative/step.py).
On q4 with a prefill copy (models/gguf_q4_model.py), prompts of at least PREFILL_FROM tokens read the
bfloat16 copy and shorter ones the int4 kernel.
"""

from __future__ import annotations

import argparse
import time

import torch

from decodekit.session import Session


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtypes", default="q4,bfloat16")
    parser.add_argument("--sizes", default="16,32,64,128,256")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    session = Session()
    print("| dtype | prompt tokens | forward (ms) | per token (ms) |\n|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        backend = session.model(args.model, dtype=dtype).backend
        for size in (int(n) for n in args.sizes.split(",")):
            tokens = torch.arange(size) % 1000 + 100
            best = float("inf")
            for _ in range(3):
                cache = backend.new_cache()
                start = time.perf_counter()
                backend.forward(tokens, torch.arange(size), cache, last=1)
                best = min(best, time.perf_counter() - start)
            print(f"| {dtype} | {size} | {best * 1e3:.1f} | {best * 1e3 / size:.2f} |", flush=True)


if __name__ == "__main__":
    main()
