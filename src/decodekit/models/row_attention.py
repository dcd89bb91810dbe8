"""Attention row by row: a verification forward whose every row computes exactly what one-token decoding does.

In bfloat16 (and `--dtype q4`, whose products take bfloat16 activations) a forward over a draft tree differs
from decoding the same tokens one at a time, and the difference is not in the matrix products: on a CPU with
AMX (and on an AMD Zen 4, a lone row multiplied as two, onednn.py), oneDNN's bfloat16 products and PyTorch's
int4 kernel give every row the same bits whatever the number of rows (`decodekit models` measures it on the
CPU at hand, see precision_probe.py). It is in attention: one
`scaled_dot_product_attention` call over all the new rows, with a mask, reduces over `past + rows` key
columns (the masked ones as zeros) in a blocking chosen for that shape, where one-token decoding reduces over
exactly the `past + depth + 1` keys that row sees. A few units in the last place of one attention output
become, after bfloat16 rounding and 30 layers, logits apart by up to about 0.8. (On a CPU without AMX attention
computes in float32, backend_lean.py: `attention_dtype`; the rule below holds in either precision.)

The rule here: each row attends on its own, with no mask, to the keys it sees, in position order, laid out
contiguously: a prefix of the cache (a chain's rows, and every row of a causal forward) is a view of it; any
other set (a tree row's past and ancestors) is gathered, one `index_select` per layer for all such rows. The
call then has the same shapes and values as the one-token step's, so the same kernel gives the same bits.
Where the native kernel builds (native_attention.py, float32 attention), every row of the forward goes to it
in one call instead, one-token forwards included, each row over its keys where they lie in the cache.

Cost: one attention call per row and layer instead of one per layer (8 rows x 30 layers for SmolLM2-135M), and
the gathered copies; `decodekit profile` shows it. Parameter: `ROW_LIMIT` = 32 rows, the largest forward
attended this way (a draft's verification is at most NUM_DRAFT + 1 = 8 rows by default), and the most rows
one product takes in it: past 32 rows, oneDNN's bfloat16 products over a long input (4,864 wide) gave some
rows other bits (onednn.py), so a batched forward over more rows multiplies in blocks of 32
(`products_in_blocks`). Longer forwards (a prompt's prefill) attend in one call, the same for plain decoding
and for every speculative method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from decodekit.models.native_attention import NativeRowAttention

ROW_LIMIT = 32


@dataclass(frozen=True)
class RowKeys:
    """Where each row of a forward finds its keys: `spans[r] = (gathered, start, length)`, the keys
    `[start, start + length)` of the cache itself (gathered False: a prefix, start 0) or of the keys that
    `gather` selects (the positions of every gathered row in turn). The same as int32 lists for the native
    kernel (native_attention.py): row r sees the cache positions `index[offsets[r]:offsets[r + 1]]`."""

    spans: list[tuple[bool, int, int]]
    gather: torch.Tensor | None
    index: torch.Tensor
    offsets: torch.Tensor


def row_keys(mask: torch.Tensor) -> RowKeys:
    """The plan for a boolean mask [rows, columns] (True: the row sees that cache position)."""
    lengths = mask.sum(dim=1).tolist()
    spans: list[tuple[bool, int, int]] = []
    gathered: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []
    offset = 0
    for row, length in zip(mask, lengths, strict=True):
        if bool(row[:length].all()):
            spans.append((False, 0, length))
            seen.append(torch.arange(length))
        else:
            spans.append((True, offset, length))
            gathered.append(row.nonzero().squeeze(1))
            seen.append(gathered[-1])
            offset += length
    offsets = torch.tensor([0, *lengths], dtype=torch.int64).cumsum(0).to(torch.int32)
    return RowKeys(spans, torch.cat(gathered) if gathered else None, torch.cat(seen).to(torch.int32), offsets)


def prefix_keys(length: int) -> RowKeys:
    """The plan of a one-token forward that sees the first `length` cache positions."""
    return RowKeys([(False, 0, length)], None, torch.arange(length, dtype=torch.int32),
                   torch.tensor([0, length], dtype=torch.int32))


def attend_rows(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, plan: RowKeys,
                scale: float, native: NativeRowAttention | None = None) -> torch.Tensor:
    """Attention of queries [1, heads, rows, dim] over keys and values [1, kv_heads, positions, dim], each row
    alone over the keys `plan` gives it: [1, heads, rows, dim], as the one call with a mask would return.
    With `native`, in one call of that kernel (native_attention.py), else one SDPA call per row."""
    if native is not None:
        return native.attend(queries, keys, values, plan.index, plan.offsets, scale)
    if plan.gather is not None:
        gathered_keys = keys.index_select(2, plan.gather)
        gathered_values = values.index_select(2, plan.gather)
    outputs = []
    for row, (gathered, start, length) in enumerate(plan.spans):
        row_keys_, row_values = (gathered_keys, gathered_values) if gathered else (keys, values)
        outputs.append(F.scaled_dot_product_attention(
            queries[:, :, row : row + 1], row_keys_[:, :, start : start + length],
            row_values[:, :, start : start + length], scale=scale, enable_gqa=True,
        ))
    return torch.cat(outputs, dim=2)


def products_in_blocks(linear):
    """`linear` (the lean backend's product: x, weight, packed, bias, rows) over at most ROW_LIMIT rows at a
    time, so that each row rounds as it does in a forward of its own."""

    def blocked(x, weight, packed, bias, rows):
        return torch.cat([linear(x[start : start + ROW_LIMIT], weight, packed, bias, min(ROW_LIMIT, rows - start))
                          for start in range(0, x.shape[0], ROW_LIMIT)])

    return blocked
