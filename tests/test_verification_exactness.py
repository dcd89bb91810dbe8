"""Verification against one-token decoding on the lean backend (speculative/exactness.py), row by row.

A draft tree (two branches, one following the greedy continuation) and a chain of the greedy continuation, after a
real prompt: each row's logits from the tree forward against the same token fed one at a time after its
ancestors. In float32 the packed products of a 4..16-row forward round differently from the one-row products
(measured: at most about 7e-5 here), and no row's argmax changes. In bfloat16 and with `--dtype q4`, attention
runs row by row (models/row_attention.py), so where this CPU's products give each row the same bits for any
number of rows (precision_probe.py: on AMX) every row is bit for bit one-token decoding's; elsewhere only the
bound holds. (The llama.cpp backend is exact: test_llamacpp_backend.)
"""

import pytest

from decodekit.api import generate
from decodekit.drafting.base import Draft
from decodekit.models.backend_lean import LeanLlamaBackend
from decodekit.models.precision_probe import BF16, rows_invariant
from decodekit.speculative.exactness import tree_vs_single
from identity import verification_exact_here

PROMPT = "Write a Python function that returns the n-th Fibonacci number."
BOUNDS = {"float32": 2e-4, "bfloat16": 2.0, "q4": 2.0}


def drafts(model, prompt):
    follow = generate(prompt, model, method="ar", max_new_tokens=6).token_ids
    tree = Draft([follow[0], follow[1], 1000, follow[2], 2000, follow[3], 3000], [-1, 0, -1, 1, 2, 3, 3])
    return [tree, Draft.chain(follow[:6])]


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "q4"])
def test_lean_tree_rows_against_one_token_decoding(precision, request):
    fixture = {"float32": "smollm2_f32", "bfloat16": "smollm2_bf16", "q4": "smollm2_q4"}[precision]
    model = request.getfixturevalue(fixture)
    prompt = model.encode(PROMPT)
    for draft in drafts(model, prompt):
        comparison = tree_vs_single(model.backend, prompt, draft)
        if verification_exact_here(precision):
            assert comparison.exact, comparison.row_diffs
        assert comparison.argmax_flips == 0, comparison.flipped_rows
        assert comparison.max_abs_diff <= BOUNDS[precision], comparison.row_diffs


@pytest.mark.skipif(not rows_invariant(BF16), reason="this CPU's bfloat16 products depend on the number of rows")
def test_bfloat16_rows_are_exact_only_with_attention_row_by_row(smollm2_bf16):
    """The control: the same weights with attention in one masked call per forward (`row_exact=False`)
    round the tree's rows apart from one-token decoding; row by row removes exactly that."""
    prompt = smollm2_bf16.encode(PROMPT)
    one_call = LeanLlamaBackend(smollm2_bf16.model, row_exact=False)
    assert not tree_vs_single(one_call, prompt, drafts(smollm2_bf16, prompt)[0]).exact
