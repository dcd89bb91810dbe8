"""bfloat16 products over weights reordered once for oneDNN: faster, and the same bits per row for any rows.

`F.linear` in bfloat16 on a CPU goes through oneDNN and reorders the weight into oneDNN's blocked layout on
every call; `reorder(weight)` does it once (a copy as large as the weight) and `linear` multiplies over the
copy. On a Sapphire Rapids with AMX that made a one-token SmolLM2-135M step 1.35 times faster (README), and it
changes which kernel runs where: `F.linear` switches kernels past 32 rows, and for some shapes (an input
dimension of 4,864, Qwen2.5-0.5B's MLP) gives a row different bits with 8 rows than alone, where products
over the reordered weight gave each row the same bits for 1 to 32 rows on every shape measured (and up to 64
rows on inputs up to 1,536 wide; precision_probe.py measures it on the CPU at hand).

On an AMD Zen 4 (AVX512-BF16, no AMX) one row takes a kernel of its own that sums in another order (rows of a
1,536-wide input got other bits alone than beside others), while every count from 2 to 40 rows gave each row
the bits it gets among 32. So `linear` multiplies a single row as two (the row twice) and keeps the first: the
weight is read once either way, and on the AMX machine two rows already had one row's bits.
"""

from __future__ import annotations

import torch


def available() -> bool:
    """Whether this torch has oneDNN's reordered linear on the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def reorder(weight: torch.Tensor) -> torch.Tensor:
    """`weight` [out, in] reordered into oneDNN's blocked layout, for products over any number of rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)


def linear(x: torch.Tensor, reordered: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x @ weight.T + bias` over `reorder(weight)`, x [rows, in]; a single row is multiplied as two (above)."""
    if x.shape[0] == 1:
        return torch.ops.mkldnn._linear_pointwise(x.expand(2, -1), reordered, bias, "none", [], "")[:1]
    return torch.ops.mkldnn._linear_pointwise(x, reordered, bias, "none", [], "")
