"""Compare the lean and transformers backends on the embedded model: speed of plain `ar` and greedy agreement.

    python scripts/compare_backends.py speed [--prompts 4] [--tokens 64] [--repeats 3] [--threads N]
    python scripts/compare_backends.py agree [--tokens 48] [--dtypes float32,bfloat16]

`speed`: tokens/s of `ar` per backend and dtype, the best of `--repeats` runs per prompt (the machine is
shared, so the best run is the least disturbed one); both backends run on the same weights, interleaved.
`agree`: on tests/prompts.PROMPTS, how often greedy outputs are identical between backends and dtypes, and
the mean fraction of tokens before the first difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from decodekit.api import generate
from decodekit.bench.runner import diverges_at
from decodekit.models import load_model
from decodekit.models.backend_hf import TransformersBackend
from decodekit.models.backend_lean import LeanLlamaBackend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from prompts import PROMPTS  # noqa: E402


def both_backends(dtype: str) -> dict:
    """The embedded model in `dtype` with each backend, sharing one set of weights."""
    loaded = load_model("smollm2-135m", dtype=dtype, backend="transformers")
    lean = LeanLlamaBackend(loaded.model)
    return {"transformers": loaded, "lean": dataclasses.replace(loaded, backend=lean)}


def speed(args) -> None:
    for dtype in ("bfloat16", "float32"):
        models = both_backends(dtype)
        for prompt in PROMPTS[: args.prompts]:
            best = {name: 0.0 for name in models}
            decode = {name: 0.0 for name in models}
            for _ in range(args.repeats):
                for name, model in models.items():
                    result = generate(prompt, model, max_new_tokens=args.tokens)
                    best[name] = max(best[name], result.stats["tokens_per_second"])
                    steps = result.seconds - result.prefill_seconds
                    decode[name] = max(decode[name], len(result.steps) / steps)
            cells = "  ".join(f"{name} {best[name]:6.1f} tok/s ({decode[name]:5.1f} steps/s)" for name in models)
            print(f"{dtype:9} {cells}  {prompt[:40]!r}", flush=True)


def common_prefix(a: list[int], b: list[int]) -> int:
    position = diverges_at(a, b)
    return len(a) if position is None else position


def agree(args) -> None:
    outputs = {}
    for dtype in args.dtypes:
        for name, model in both_backends(dtype).items():
            outputs[dtype, name] = [generate(p, model, max_new_tokens=args.tokens).token_ids for p in PROMPTS]
    pairs = [((dtype, "lean"), (dtype, "transformers")) for dtype in args.dtypes]
    if len(args.dtypes) == 2:
        pairs += [(("bfloat16", name), ("float32", "transformers")) for name in ("lean", "transformers")]
    for first, second in pairs:
        same = sum(a == b for a, b in zip(outputs[first], outputs[second]))
        prefix = sum(common_prefix(a, b) / max(len(a), len(b)) for a, b in zip(outputs[first], outputs[second]))
        print(f"{'/'.join(first):22} vs {'/'.join(second):22}: identical {same}/{len(PROMPTS)}, "
              f"mean agreeing prefix {prefix / len(PROMPTS):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["speed", "agree"])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--dtypes", type=lambda text: text.split(","), default=["float32", "bfloat16"],
                        help="for agree: float32, bfloat16 or both (comma-separated)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    speed(args) if args.mode == "speed" else agree(args)


if __name__ == "__main__":
    main()
