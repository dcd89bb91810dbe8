"""Is a reduced precision exact for verification on this CPU? Its matrix products, measured.

On the lean backend, a draft tree's verification gives every row the bits of one-token decoding when each
matrix product gives a row the same bits whatever the number of rows beside it (attention is computed row by row
in reduced precision, row_attention.py, and the other operations act on each row alone). Whether the products
do depends on the kernels the CPU gets: on a Sapphire Rapids with AMX, oneDNN's bfloat16 products over
reordered weights and PyTorch's int4 kernel do, and on an AMD Zen 4 too once a lone row is multiplied as two
(onednn.py); float32's MKL products do not (the one-row and many-row products block the sums differently,
about 1e-7 apart).

`rows_invariant(kind)` measures it: a product over 32 random rows against each row alone, for a few
weights of the shapes of a small model's projections, bit for bit. It takes a fraction of a second, so it is run
where a choice needs it (`--dtype auto`, `decodekit models`), not stored.
"""

from __future__ import annotations

import torch

from decodekit.models import onednn
from decodekit.models.row_attention import ROW_LIMIT

# [out, in]: a small model's MLP and attention projections, and a long input (Qwen2.5-0.5B's MLP down
# projection, where unreordered bfloat16 products gave rows different bits)
SHAPES = ((1536, 576), (576, 1536), (960, 576), (896, 4864))
ROWS = ROW_LIMIT  # the most rows a product takes where exactness is needed (row_attention.py)
BF16 = "bfloat16"
INT4 = "int4"


def _bfloat16_product(weight: torch.Tensor):
    reordered = onednn.reorder(weight)
    return lambda x: onednn.linear(x, reordered)


def _int4_product(weight: torch.Tensor):
    generator = torch.Generator().manual_seed(1)
    values = torch.randint(0, 16, weight.shape, dtype=torch.int32, generator=generator)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values, 1)
    groups = weight.shape[1] // 32
    scales_zeros = (torch.rand(groups, weight.shape[0], 2, generator=generator) * 0.01).to(torch.bfloat16)
    return lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, 32, scales_zeros)


def available(kind: str) -> bool:
    """Whether this torch has the kernels of `kind` on the CPU."""
    if kind == BF16:
        return onednn.available()
    if kind == INT4:
        return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")
    raise ValueError(f"unknown kind of product {kind!r}")


def rows_invariant(kind: str) -> bool:
    """True when every product of `kind` (BF16: oneDNN bfloat16; INT4: the int4 kernel) gives each of 8 rows
    the bits it gives that row alone (of `ROWS`), on this CPU and thread count."""
    if not available(kind):
        return False
    return products_rows_invariant(_bfloat16_product if kind == BF16 else _int4_product)


def products_rows_invariant(make) -> bool:
    """`make(weight)` -> a product x -> y; True when, for a random bfloat16 weight of each of `SHAPES`, the
    product over `ROWS` rows equals, row by row and bit for bit, the product over each row alone."""
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for out_features, in_features in SHAPES:
            weight = (torch.randn(out_features, in_features, generator=generator) * 0.02).to(torch.bfloat16)
            product = make(weight)
            x = torch.randn(ROWS, in_features, generator=generator).to(torch.bfloat16)
            together = product(x)
            for row in range(ROWS):
                if not torch.equal(product(x[row : row + 1])[0], together[row]):
                    return False
    return True
