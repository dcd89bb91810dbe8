"""Attention row by row (models/row_attention.py): the plan per mask, and the same attention as one masked call."""

import torch
import torch.nn.functional as F

from decodekit.models.row_attention import attend_rows, row_keys


def test_plan_views_prefixes_and_gathers_the_rest():
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[:, 4:] = False
    mask[0, 4] = True  # row 0: past 0..3 and itself (column 4): a prefix
    mask[1, 4:6] = True  # row 1: a prefix 0..5
    mask[2, 4] = mask[2, 6] = True  # row 2: skips column 5, its sibling
    plan = row_keys(mask)
    assert plan.spans == [(False, 0, 5), (False, 0, 6), (True, 0, 6)]
    assert plan.gather.tolist() == [0, 1, 2, 3, 4, 6]


def test_rows_attend_as_one_masked_call_and_each_as_its_own_step():
    generator = torch.Generator().manual_seed(0)
    heads, kv_heads, dim, past = 4, 2, 16, 5
    parents = [-1, 0, -1, 2]  # two branches of two
    rows = len(parents)
    mask = torch.zeros(rows, past + rows, dtype=torch.bool)
    mask[:, :past] = True
    for row, parent in enumerate(parents):
        mask[row, past + row] = True
        while parent >= 0:
            mask[row, past + parent] = True
            parent = parents[parent]
    queries = torch.randn(1, heads, rows, dim, generator=generator)
    keys = torch.randn(1, kv_heads, past + rows, dim, generator=generator)
    values = torch.randn(1, kv_heads, past + rows, dim, generator=generator)
    together = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, scale=0.25, enable_gqa=True)
    by_rows = attend_rows(queries, keys, values, row_keys(mask), 0.25)
    torch.testing.assert_close(by_rows, together)
    for row in range(rows):  # bit for bit what that row's own step computes over the keys it sees
        seen = mask[row].nonzero().squeeze(1)
        alone = F.scaled_dot_product_attention(queries[:, :, row : row + 1], keys[:, :, seen], values[:, :, seen],
                                               scale=0.25, enable_gqa=True)
        assert torch.equal(by_rows[:, :, row : row + 1], alone)
