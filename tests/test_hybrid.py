"""The SAM + Token Recycling hybrid: a long suffix match drafts, a short one falls back to recycling."""

import pytest
import torch

from decodekit.drafting.hybrid import HybridDrafter
from decodekit.drafting.suffix_automaton import SuffixAutomatonDrafter
from decodekit.drafting.token_recycling import RecycleDrafter, RecycleState
from decodekit.errors import UserError
from decodekit.sampling import SamplingConfig
from decodekit.sampling import Sampler

V = 32


def make(threshold=3):
    state = RecycleState(V, k=2)
    logits = torch.zeros(1, V)
    logits[0, 20], logits[0, 21] = 2.0, 1.0
    state.update([9], logits)  # 9 -> 20, 21
    return HybridDrafter(SuffixAutomatonDrafter(), RecycleDrafter(state, tree_size=3), threshold), state


def test_long_match_copies_and_short_match_recycles():
    hybrid, _ = make(threshold=3)
    text = [1, 2, 3, 4, 5, 6, 1, 2, 3]
    hybrid.reset(text, Sampler(SamplingConfig()))
    assert hybrid.longest_match() == 3
    assert hybrid.propose(text, budget=4).tokens == [4, 5, 6, 1]  # what followed 1 2 3
    short = [1, 2, 3, 4, 5, 9]
    hybrid.reset(short, Sampler(SamplingConfig()))
    assert hybrid.longest_match() == 0
    draft = hybrid.propose(short, budget=4)  # ranks 0, 0.0 (dropped: 20 has no row yet), 1
    assert draft.tokens == [20, 21] and draft.parents == [-1, -1]


def test_both_parts_learn_from_every_step():
    hybrid, state = make(threshold=2)
    hybrid.reset([7, 8, 9], Sampler(SamplingConfig()))
    logits = torch.zeros(2, V)
    logits[0, 7] = 1.0  # the root 9 predicts 7
    logits[1, 8] = 1.0  # the drafted 20 predicts 8
    draft = hybrid.propose([7, 8, 9], budget=1)
    hybrid.observe([7], logits, draft, [])
    assert state.adjacency[9, 0] == 7 and state.adjacency[20, 0] == 8
    hybrid.observe([8], torch.zeros(1, V), hybrid.propose([7, 8, 9, 7], budget=0), [])
    assert hybrid.longest_match() == 2  # "7 8" ends the text and occurred before
    assert hybrid.propose([7, 8, 9, 7, 8], budget=3).tokens == [9, 7, 8]


def test_threshold_must_be_positive():
    with pytest.raises(UserError):
        make(threshold=0)
