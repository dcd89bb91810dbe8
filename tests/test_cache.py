"""KV cache edits: after forwarding extra tokens and truncating or keeping a subset, the next logits equal
those of a fresh forward over the committed tokens (float32; tolerance 1e-4 absolute on logits)."""

import pytest
import torch

from decodekit.drafting.base import Draft
from decodekit.speculative.tree import tree_mask
from tiny import tiny_model

TOLERANCE = 1e-4


def fresh_last_logits(model, tokens):
    backend = model.backend
    cache = backend.new_cache()
    return backend.forward(torch.tensor(tokens), torch.arange(len(tokens)), cache, last=1)[-1]


def check_truncate(model, prompt, extra, next_token):
    backend = model.backend
    cache = backend.new_cache()
    backend.forward(torch.tensor(prompt), torch.arange(len(prompt)), cache)
    backend.forward(torch.tensor(extra), len(prompt) + torch.arange(len(extra)), cache)
    cache.truncate(len(prompt))
    assert cache.length == len(prompt)
    logits = backend.forward(torch.tensor([next_token]), torch.tensor([len(prompt)]), cache)[-1]
    assert torch.allclose(logits, fresh_last_logits(model, prompt + [next_token]), atol=TOLERANCE)


def check_keep_tree_path(model, prompt):
    """Forward a tree, keep a non-contiguous root path, continue: equals the committed sequence's forward."""
    backend = model.backend
    cache = backend.new_cache()
    backend.forward(torch.tensor(prompt[:-1]), torch.arange(len(prompt) - 1), cache)
    draft = Draft([11, 12, 13, 14, 15], [-1, 0, -1, 2, 3])  # the path 13 -> 14 -> 15 sits at nodes 2, 3, 4
    past = cache.length
    inputs = torch.tensor([prompt[-1]] + draft.tokens)
    positions = past + torch.tensor([0] + draft.depths())
    backend.forward(inputs, positions, cache, tree_mask(draft))
    cache.keep(past, [0, 3, 4])  # root, 13, 14
    assert cache.length == past + 3
    logits = backend.forward(torch.tensor([15]), torch.tensor([past + 3]), cache)[-1]
    assert torch.allclose(logits, fresh_last_logits(model, prompt + [13, 14, 15]), atol=TOLERANCE)


def test_truncate_and_keep_on_tiny_model():
    model = tiny_model(vocab_size=64, seed=11)
    check_truncate(model, [3, 4, 5, 6, 7], [8, 9, 10], 20)
    check_keep_tree_path(model, [3, 4, 5, 6, 7])


@pytest.mark.integration
def test_truncate_and_keep_on_embedded_model(smollm2_f32):
    prompt = smollm2_f32.encode("Name a colour.")
    check_truncate(smollm2_f32, prompt, [504, 2873, 30], 1345)
    check_keep_tree_path(smollm2_f32, prompt)


def test_truncate_beyond_length_is_an_error():
    model = tiny_model(vocab_size=64, seed=12)
    cache = model.backend.new_cache()
    model.backend.forward(torch.tensor([1, 2]), torch.arange(2), cache)
    with pytest.raises(ValueError):
        cache.truncate(5)
