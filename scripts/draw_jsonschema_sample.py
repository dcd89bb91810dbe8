"""Draw a JSONSchemaBench sample for `decodekit bench-json`, the way the README's held-out figures were drawn.

    git clone https://github.com/guidance-ai/jsonschemabench
    python scripts/draw_jsonschema_sample.py jsonschemabench --exclude tests/data/jsonschema-dev.jsonl \
        --per-subset 8 --seed 20261202 > jsonschema-heldout.jsonl

Per subset (the nine of tests/data/jsonschema-dev.jsonl, in that order): the subset's `data/<subset>/*.json`
files in sorted order, shuffled with `random.Random(seed)` (one generator for the whole draw), then the first
`--per-subset` files that are not in the excluded file, hold at most `--max-chars` characters and parse as
JSON. Writes one `{"id": "<subset>/<file name>", "category", "schema"}` line per schema.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SUBSETS = ("Glaiveai2K", "Github_trivial", "Github_easy", "Github_medium", "Github_hard", "Kubernetes", "Snowplow",
           "WashingtonPost", "JsonSchemaStore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path, help="a checkout of github.com/guidance-ai/jsonschemabench")
    parser.add_argument("--exclude", type=Path, action="append", default=[], help="JSONL rows whose ids to skip")
    parser.add_argument("--per-subset", type=int, default=8)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--max-chars", type=int, default=6000)
    args = parser.parse_args()
    excluded = {json.loads(line)["id"] for path in args.exclude for line in path.read_text().splitlines()
                if line.strip()}
    rng = random.Random(args.seed)
    for subset in SUBSETS:
        files = sorted((args.repo / "data" / subset).glob("*.json"))
        if not files:
            sys.exit(f"{args.repo / 'data' / subset}: no schemas (is {args.repo} a jsonschemabench checkout?)")
        rng.shuffle(files)
        taken = 0
        for path in files:
            key = f"{subset}/{path.name}"
            text = path.read_text(encoding="utf-8")
            if key in excluded or len(text) > args.max_chars:
                continue
            try:
                schema = json.loads(text)
            except ValueError:
                continue
            print(json.dumps({"id": key, "category": subset, "schema": schema}))
            taken += 1
            if taken == args.per_subset:
                break


if __name__ == "__main__":
    main()
