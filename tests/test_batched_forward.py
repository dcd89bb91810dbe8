"""A batched forward over several sequences gives each sequence the logits of its solo forward.

Four prompts of different lengths are prefilled one by one into slots of one cache store, then one batched
forward carries a different continuation for each (a chain, a draft tree with its mask, a single token, a
longer chain): each sequence's logits equal those of the same forward run alone on a copy of its cache, within
1e-5 in float32 on a tiny model (the batched products round differently from the solo ones, no more), and
within 1e-5 of the logits' scale on the embedded SmolLM2 (30 layers). The caches then hold
what a solo forward leaves, and the step functions run two requests interleaved and together with the same
tokens as alone. Both backends: the lean one (slots of one store) and transformers (padded batch). In
bfloat16 on a CPU whose products round each row alike, the lean backend's batched logits equal the solo ones.
"""

import pytest
import torch

from decodekit.core import DecodeRequest
from decodekit.drafting.base import Draft
from decodekit.models.backend_hf import TransformersBackend
from decodekit.models.backend_lean import LeanLlamaBackend
from decodekit.models.precision_probe import BF16, rows_invariant
from decodekit.models.protocols import SequenceInput
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.step import prefill, result, step, step_together
from decodekit.speculative.tree import tree_mask
from decodekit.drafting.prompt_lookup import PromptLookupDrafter
from tiny import tiny_model

TOLERANCE = 1e-5
PROMPTS = [[3, 4, 5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24], [25, 26]]


def continuations():
    tree = Draft([40, 41, 42, 43], [-1, 0, -1, 2])
    return [
        (torch.tensor([30, 31, 32]), None),
        (torch.tensor([33] + tree.tokens), tree_mask(tree)),
        (torch.tensor([34]), None),
        (torch.tensor([35, 36, 37, 38, 39, 44]), None),
    ]


def depths(mask):
    return mask.sum(dim=-1) - 1 if mask is not None else None


def prefilled(backend, caches):
    for prompt, cache in zip(PROMPTS, caches):
        backend.forward(torch.tensor(prompt), torch.arange(len(prompt)), cache)


def sequence_inputs(caches):
    items = []
    for (ids, mask), cache in zip(continuations(), caches):
        past = cache.length
        positions = past + (depths(mask) if mask is not None else torch.arange(len(ids)))
        items.append(SequenceInput(ids, positions, cache, mask))
    return items


@pytest.fixture(params=["lean", "transformers"])
def backend(request):
    model = tiny_model(vocab_size=64, seed=5, layers=2).model
    return LeanLlamaBackend(model, pack=False) if request.param == "lean" else TransformersBackend(model)


def test_four_prompts_in_one_batched_forward_equal_their_solo_runs(backend):
    caches = backend.new_caches(4)
    prefilled(backend, caches)
    solo_caches = [cache.fork() for cache in caches]
    batched = backend.forward_batch(sequence_inputs(caches))
    for item, logits, solo_cache in zip(sequence_inputs(solo_caches), batched, solo_caches):
        alone = backend.forward(item.input_ids, item.positions, solo_cache, item.tree_mask)
        assert logits.shape == alone.shape
        assert (logits - alone).abs().max() <= TOLERANCE
    for cache, solo_cache in zip(caches, solo_caches):
        assert cache.length == solo_cache.length
        following = torch.tensor([cache.length])
        after = backend.forward(torch.tensor([50]), following, cache)
        after_solo = backend.forward(torch.tensor([50]), following, solo_cache)
        assert (after - after_solo).abs().max() <= TOLERANCE


@pytest.mark.skipif(not rows_invariant(BF16), reason="this CPU's bfloat16 products depend on the number of rows")
@pytest.mark.parametrize("attention", [torch.bfloat16, torch.float32])
def test_bfloat16_batched_forward_has_the_bits_of_the_solo_runs(attention):
    """In bfloat16 each sequence attends row by row over its own slot (row_attention.py), over reordered
    products that round each row alike: its logits are its solo forward's exactly, not within a bound; with
    attention in bfloat16 (AMX) or over a float32 cache (a CPU without AMX)."""
    model = tiny_model(vocab_size=64, seed=5, layers=2).model.to(torch.bfloat16)
    backend = LeanLlamaBackend(model, attention=attention)
    assert backend.onednn and backend.row_exact
    caches = backend.new_caches(4)
    prefilled(backend, caches)
    solo_caches = [cache.fork() for cache in caches]
    batched = backend.forward_batch(sequence_inputs(caches))
    for item, logits, solo_cache in zip(sequence_inputs(solo_caches), batched, solo_caches):
        assert torch.equal(logits, backend.forward(item.input_ids, item.positions, solo_cache, item.tree_mask))


def test_a_forked_cache_is_independent(backend):
    cache = backend.new_caches(1)[0]
    backend.forward(torch.tensor(PROMPTS[0]), torch.arange(7), cache)
    twin = cache.fork()
    backend.forward(torch.tensor([30, 31]), 7 + torch.arange(2), twin)
    assert cache.length == 7 and twin.length == 9
    original = backend.forward(torch.tensor([32]), torch.tensor([7]), cache)
    fresh = backend.new_cache()
    expected = backend.forward(torch.tensor(PROMPTS[0] + [32]), torch.arange(8), fresh)[-1:]
    assert (original - expected).abs().max() <= 1e-4


def test_requests_interleaved_or_stepped_together_give_their_solo_tokens():
    model = tiny_model(vocab_size=64, seed=6, layers=2, backend="lean")
    prompts = [[1, 2, 3, 1, 2, 3, 1, 2], [7, 8, 9, 10], [20, 21, 20, 21, 20]]

    def alone(prompt):
        state = prefill(model, DecodeRequest(prompt, 12), Decoder(PromptLookupDrafter()), "pld")
        while not state.finished:
            step(state)
        return result(state).token_ids

    expected = [alone(p) for p in prompts]
    states = [prefill(model, DecodeRequest(p, 12), Decoder(PromptLookupDrafter()), "pld") for p in prompts]
    while not all(s.finished for s in states):  # interleaved, one request's step at a time
        for s in states:
            if not s.finished:
                step(s)
    assert [result(s).token_ids for s in states] == expected
    caches = model.backend.new_caches(len(prompts))
    states = [prefill(model, DecodeRequest(p, 12), Decoder(PromptLookupDrafter()), "pld", cache)
              for p, cache in zip(prompts, caches)]
    while not all(s.finished for s in states):  # one batched forward per step over the unfinished ones
        step_together([s for s in states if not s.finished])
    assert [result(s).token_ids for s in states] == expected


@pytest.mark.integration
def test_four_real_prompts_batched_on_the_embedded_model(smollm2_f32):
    backend = LeanLlamaBackend(smollm2_f32.model, pack=False)  # packed products would round apart from batched
    prompts = [smollm2_f32.encode(text) for text in (
        "Name a colour.", "Write a haiku about the sea, please.", "2 + 2 =", "Translate 'good morning' to French.")]
    caches = backend.new_caches(4)
    for prompt, cache in zip(prompts, caches):
        backend.forward(torch.tensor(prompt[:-1]), torch.arange(len(prompt) - 1), cache)
    solo_caches = [cache.fork() for cache in caches]
    items = [SequenceInput(torch.tensor(p[-1:] + p[:k]), c.length + torch.arange(1 + k), c)
             for p, c, k in zip(prompts, caches, (0, 3, 5, 7))]
    batched = backend.forward_batch(items)
    for item, logits, solo_cache in zip(items, batched, solo_caches):
        alone = backend.forward(item.input_ids, item.positions, solo_cache)
        # relative to the logits' scale (about 20 here): 30 layers of larger products round further apart
        assert (logits - alone).abs().max() <= TOLERANCE * alone.abs().max()


def test_the_store_never_holds_uninitialised_memory():
    """A batched forward reads every slot up to the longest sequence; a NaN left in memory at a masked
    position would still reach the output (0 * NaN), so every position no forward wrote is zero: after
    allocation, after the capacity doubles, and after a slot is added."""
    backend = LeanLlamaBackend(tiny_model(vocab_size=64, seed=5, layers=2).model)
    first, second = backend.new_caches(2)
    store = first.store
    assert not store.keys.any() and not store.values.any()
    backend.forward(torch.tensor(PROMPTS[2]), torch.arange(len(PROMPTS[2])), first)
    store.reserve(min(store.limit, 2 * store.capacity))
    third = store.acquire()
    for keys in (store.keys, store.values):
        assert keys[:, first.slot, :, : first.length].abs().sum() > 0
        assert not keys[:, first.slot, :, first.length :].any()
        assert not keys[:, [second.slot, third.slot]].any()
