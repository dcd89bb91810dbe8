"""bfloat16 products over weights reordered once for oneDNN: faster, and the same bits per row for any rows.

`F.linear` in bfloat16 on a CPU goes through oneDNN and reorders the weight into oneDNN's blocked layout on
every call; `reorder(weight)` does it once (a copy as large as the weight) and `linear` multiplies over the
copy. On a Sapphire Rapids with AMX that made a one-token SmolLM2-135M step 1.35 times faster (README), and it
changes which kernel runs where: `F.linear` switches kernels past 32 rows, and for some shapes (an input
dimension of 4,864, Qwen2.5-0.5B's MLP) gives a row different bits with 8 rows than alone, where products
over the reordered weight gave each row the same bits for 1 to 32 rows on every shape measured (and up to 64
rows on inputs up to 1,536 wide; precision_probe.py measures it on the CPU at hand).
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
    """`x @ weight.T + bias` over `reorder(weight)`; up to 32 rows the bits of `F.linear(x, weight, bias)`."""
    return torch.ops.mkldnn._linear_pointwise(x, reordered, bias, "none", [], "")
