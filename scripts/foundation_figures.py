"""Figures for the foundation (not a test): cold and warm load of the embedded default, and `ar` tokens/s
next to transformers `generate` on the same 10 prompts, same dtype and threads, in one process.

    python scripts/foundation_figures.py [--dtype bfloat16] [--max-new-tokens 128] [--threads N]

Cold load: a fresh DECODEKIT_CACHE (the GGUF is dequantised and cached); warm: a second process on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

LOAD = "import time, decodekit; t = time.perf_counter(); decodekit.load_model('smollm2-135m'); print(time.perf_counter() - t)"


def load_seconds(cache: str) -> float:
    out = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, check=True,
                         env={**os.environ, "DECODEKIT_CACHE": cache})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        cold = load_seconds(cache)
        warm = min(load_seconds(cache) for _ in range(2))

    import torch

    import decodekit
    from decodekit.api import generate

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from prompts import PROMPTS

    model = decodekit.load_model("smollm2-135m", dtype=args.dtype, threads=args.threads)
    ours_tokens = ours_seconds = hf_tokens = hf_seconds = 0.0
    generate(PROMPTS[0], model, max_new_tokens=8)  # warm-up
    for prompt in PROMPTS[:10]:
        result = generate(prompt, model, max_new_tokens=args.max_new_tokens)
        ours_tokens += len(result.token_ids)
        ours_seconds += result.seconds
        ids = torch.tensor([model.encode(prompt)])
        start = time.perf_counter()
        out = model.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                   do_sample=False)
        hf_seconds += time.perf_counter() - start
        hf_tokens += out.shape[1] - ids.shape[1]
    print(json.dumps({
        "dtype": str(model.dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
        "backend": model.backend.name, "cold_load_seconds": round(cold, 2), "warm_load_seconds": round(warm, 2),
        "ar_tokens_per_second": round(ours_tokens / ours_seconds, 2),
        "hf_generate_tokens_per_second": round(hf_tokens / hf_seconds, 2),
        "tokens": {"ar": int(ours_tokens), "hf": int(hf_tokens)},
    }, indent=1))


if __name__ == "__main__":
    main()
