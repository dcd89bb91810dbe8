"""How often each method's greedy output equals plain `ar`'s in a given dtype, and how close to a tie the
target was where they part (not a test: figures for the closing note and the docs).

    python scripts/bf16_identity.py [--dtype bfloat16] [--tokens 48] [--methods pld,sam,...]

For every prompt of tests/prompts.PROMPTS: the first position where the method's tokens differ from `ar`'s,
and the margin p(top-1) - p(top-2) of `ar`'s own distribution there (a near-tie shows as a small margin).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from decodekit.api import generate
from decodekit.bench.runner import diverges_at
from decodekit.methods import METHODS
from decodekit.models import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from prompts import PROMPTS  # noqa: E402


def margins(result) -> list[float]:
    return [m for step in result.steps for m in step.margin]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--methods", default=",".join(m for m in METHODS if m not in ("ar", "draft")))
    args = parser.parse_args()
    model = load_model("smollm2-135m", dtype=args.dtype)
    references = [generate(p, model, method="ar", max_new_tokens=args.tokens) for p in PROMPTS]
    report = {}
    for method in args.methods.split(","):
        options = {"draft_model": "smollm2-135m"} if method == "draft" else {}
        divergences = []
        for prompt, reference in zip(PROMPTS, references):
            result = generate(prompt, model, method=method, max_new_tokens=args.tokens, **options)
            position = diverges_at(reference.token_ids, result.token_ids)
            if position is not None:
                ar_margin = margins(reference)[position] if position < len(reference.token_ids) else None
                divergences.append({"prompt": prompt[:40], "position": position, "ar_margin": ar_margin})
        report[method] = {"identical": len(PROMPTS) - len(divergences), "prompts": len(PROMPTS),
                          "divergences": divergences}
        print(json.dumps({method: report[method]}), flush=True)
    print(json.dumps({m: f"{r['identical']}/{r['prompts']}" for m, r in report.items()}))


if __name__ == "__main__":
    main()
