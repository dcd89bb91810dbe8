"""What `--dtype q4` keeps of a GGUF file's layer weights, per tensor format, and what each form costs.

    python scripts/gguf_formats.py FILE.gguf [--timing] [--threads N]

For every layer projection: whether the unpacked int4 products (gguf_blocks.py) add up to gguf-py's
dequantisation bit for bit in float32, and, for the weight the kernel actually computes with (scales and
zeros rounded to bfloat16; Q6_K: each weight rounded to bfloat16), the largest error relative to the
tensor's largest weight and the mean error relative to the mean weight. With `--timing`, for one tensor of
each format and shape, the best of 20 products over 1 and 8 rows in the chosen form and as a bfloat16
`F.linear`.
"""

from __future__ import annotations

import argparse
import collections
import time

import gguf
import numpy as np
import torch
import torch.nn.functional as F

from decodekit.models import gguf_blocks
from decodekit.models.gguf_int4 import Int4Sum, pack


def best_ms(function, repeats: int = 20) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    stats = collections.defaultdict(lambda: collections.Counter())
    timed = set()
    for tensor in gguf.GGUFReader(args.file).tensors:
        kind = tensor.tensor_type.name
        if not tensor.name.startswith("blk.") or not tensor.name.endswith(".weight") or kind == "F32":
            continue
        raw = np.asarray(tensor.data)
        shape = (int(tensor.shape[1]), int(tensor.shape[0]))
        exact = torch.from_numpy(gguf.quants.dequantize(raw, tensor.tensor_type).reshape(shape))
        row = stats[kind]
        row["tensors"] += 1
        row["weights"] += exact.numel()
        if kind in gguf_blocks.INT4_KINDS:
            products = gguf_blocks.unpack(raw, kind)
            row["exact"] += int(torch.equal(gguf_blocks.dequantised(products), exact))
            effective = gguf_blocks.kernel_weight(products)
        else:
            row["exact"] += int(torch.equal(gguf_blocks.dense(raw, kind, shape), exact))
            effective = exact.bfloat16().float()
        error = (effective - exact).abs()
        row["max_rel"] = max(row["max_rel"], (error.max() / exact.abs().max()).item())
        row["error_sum"] += error.sum().item()
        row["weight_sum"] += exact.abs().sum().item()
        if args.timing and (kind, shape) not in timed:
            timed.add((kind, shape))
            dense = exact.bfloat16()
            weight = Int4Sum(tuple(pack(p, torch.bfloat16) for p in products)) \
                if kind in gguf_blocks.INT4_KINDS else None
            for rows in (1, 8):
                x = torch.randn(rows, shape[1]).bfloat16()
                plain = best_ms(lambda x=x, dense=dense: F.linear(x, dense))
                if weight is not None:
                    chosen = best_ms(lambda x=x, weight=weight: weight(x))
                    print(f"{kind} {shape}, {rows} row(s): {len(weight.products)} int4 product(s) {chosen:.2f} ms, "
                          f"bfloat16 F.linear {plain:.2f} ms")
                else:
                    print(f"{kind} {shape}, {rows} row(s): bfloat16 F.linear {plain:.2f} ms (the form used)")
    for kind, row in stats.items():
        print(f"{kind}: {row['tensors']} tensors, {row['weights']:,} weights; float32 round trip exact in "
              f"{row['exact']}/{row['tensors']}; as computed: max error / max |w| {row['max_rel']:.4f}, "
              f"mean error / mean |w| {row['error_sum'] / row['weight_sum']:.5f}")


if __name__ == "__main__":
    main()
