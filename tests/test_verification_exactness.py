"""Verification against one-token decoding on the lean backend (speculative/exactness.py), row by row.

A draft tree (two branches, one following the greedy continuation) and a chain of the greedy continuation, after a
real prompt: each row's logits from the tree forward against the same token fed one at a time after its
ancestors. In float32 the packed products of a 4..16-row forward round differently from the one-row products
(measured: at most about 7e-5 here); with `--dtype q4` the int4 kernel over bfloat16 activations differs by up to
about 1 (a logit); in neither does a row's argmax change. (The llama.cpp backend is exact: test_llamacpp_backend.)
"""

import pytest

from decodekit.api import generate
from decodekit.drafting.base import Draft
from decodekit.speculative.exactness import tree_vs_single

PROMPT = "Write a Python function that returns the n-th Fibonacci number."
BOUNDS = {"float32": 2e-4, "q4": 2.0}


def drafts(model, prompt):
    follow = generate(prompt, model, method="ar", max_new_tokens=6).token_ids
    tree = Draft([follow[0], follow[1], 1000, follow[2], 2000, follow[3], 3000], [-1, 0, -1, 1, 2, 3, 3])
    return [tree, Draft.chain(follow[:6])]


@pytest.mark.parametrize("precision", ["float32", "q4"])
def test_lean_tree_rows_against_one_token_decoding(precision, smollm2_f32, smollm2_q4):
    model = smollm2_f32 if precision == "float32" else smollm2_q4
    prompt = model.encode(PROMPT)
    for draft in drafts(model, prompt):
        comparison = tree_vs_single(model.backend, prompt, draft)
        assert comparison.argmax_flips == 0, comparison.flipped_rows
        assert comparison.max_abs_diff <= BOUNDS[precision], comparison.row_diffs
