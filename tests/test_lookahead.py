"""Lookahead decoding: the guess trie, the window's mask and depths, the n-gram pool, the window's slide."""

import pytest
import torch

from decodekit.drafting.base import Draft
from decodekit.drafting.lookahead import LookaheadDrafter, guess_trie
from decodekit.speculative.tree import tree_mask
from decodekit.errors import UserError
from decodekit.sampling import SamplingConfig
from decodekit.sampling import Sampler

V = 50


def rows_predicting(tokens):
    logits = torch.zeros(len(tokens), V)
    logits[torch.arange(len(tokens)), torch.tensor(tokens)] = 1.0
    return logits


def test_guess_trie_shares_prefixes_and_respects_the_budget():
    tokens, parents = guess_trie([(1, 2, 3), (1, 2, 4), (5, 6, 7)], budget=10)
    assert tokens == [1, 2, 3, 4, 5, 6, 7]
    assert parents == [-1, 0, 1, 1, -1, 4, 5]
    assert guess_trie([(1, 2, 3), (1, 2, 4), (5, 6, 7)], budget=5) == ([1, 2, 3, 4, 5], [-1, 0, 1, 1, -1])
    assert guess_trie([], budget=5) == ([], [])


def test_window_mask_follows_the_paper():
    drafter = LookaheadDrafter(window=3, ngram=3, guesses=2)
    mask = drafter.window_mask(2).int().tolist()
    # rows: level 0 columns 0..2, then level 1 columns 0..2; a level-1 token sees level 0 up to its column
    # and itself
    assert mask == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],
        [1, 1, 1, 0, 0, 1],
    ]


def test_draft_carries_the_window_as_auxiliary_tokens():
    drafter = LookaheadDrafter(window=3, ngram=3, guesses=2)
    drafter.reset([7, 8, 9], Sampler(SamplingConfig()))
    drafter.levels = [[11, 12, 13], [21, 22, 23]]
    drafter.pool = {9: [(30, 31), (30, 32), (40, 41)]}
    draft = drafter.propose([1, 9], budget=8)
    assert draft.tokens == [30, 31, 32] and draft.parents == [-1, 0, 0]  # two guesses, shared prefix
    assert draft.aux_tokens == [11, 12, 13, 21, 22, 23]
    assert draft.aux_depths == [1, 2, 3, 2, 3, 4]
    full = tree_mask(draft)  # what the engine forwards: root, 3 nodes, 6 window tokens
    assert full.shape == (10, 10)
    assert full[4:, 0].all() and not full[4:, 1:4].any()  # the window sees the root, not the guesses
    assert not full[:4, 4:].any()  # the guesses do not see the window


def test_observe_grows_levels_then_collects_ngrams_and_slides():
    drafter = LookaheadDrafter(window=2, ngram=3, guesses=2)
    drafter.reset([5, 6], Sampler(SamplingConfig()))
    assert len(drafter.levels) == 1 and len(drafter.levels[0]) == 2 and set(drafter.levels[0]) <= {5, 6}
    first = drafter.levels[0] = [1, 2]
    draft = drafter.propose([5, 6], budget=4)
    logits = torch.cat([rows_predicting([9]), rows_predicting([17, 18])])  # root row, then the window
    drafter.observe([9], logits, draft, [])
    assert drafter.levels == [first, [17, 18]] and drafter.pool == {}
    draft = drafter.propose([5, 6, 9], budget=4)
    logits = torch.cat([rows_predicting([3]), rows_predicting([0, 0, 27, 28])])
    drafter.observe([3], logits, draft, [])
    assert drafter.levels == [[17, 18], [27, 28]]
    assert drafter.pool == {1: [(17, 27)], 2: [(18, 28)]}
    drafter.remember((4, 1, 2))
    drafter.remember((4, 3, 3))
    drafter.remember((4, 1, 2))
    drafter.remember((4, 5, 5))
    assert drafter.pool[4] == [(5, 5), (1, 2)]  # most recent first, at most G


def test_observe_ignores_another_drafters_step():
    drafter = LookaheadDrafter(window=2, ngram=3)
    drafter.reset([5, 6], Sampler(SamplingConfig()))
    levels = [list(level) for level in drafter.levels]
    drafter.observe([1], rows_predicting([1, 2]), Draft([4], [-1]), [])
    assert drafter.levels == levels


def test_options_are_checked():
    for bad in ({"window": 0}, {"ngram": 1}, {"guesses": 0}):
        with pytest.raises(UserError):
            LookaheadDrafter(**bad)
