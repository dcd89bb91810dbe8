"""Jacobi decoding: the window is the draft, and the predictions past the committed tokens replace it."""

import pytest
import torch

from decodekit.drafting.base import Draft
from decodekit.drafting.jacobi import JacobiDrafter
from decodekit.errors import UserError
from decodekit.sampling import SamplingConfig
from decodekit.sampling import Sampler

V = 40


def rows_predicting(tokens):
    logits = torch.zeros(len(tokens), V)
    logits[torch.arange(len(tokens)), torch.tensor(tokens)] = 1.0
    return logits


def test_first_window_repeats_the_last_prompt_token_and_respects_the_budget():
    drafter = JacobiDrafter(window=4)
    drafter.reset([3, 9], Sampler(SamplingConfig()))
    assert drafter.propose([3, 9], budget=8) == Draft.chain([9, 9, 9, 9])
    assert drafter.propose([3, 9], budget=2) == Draft.chain([9, 9])


def test_predictions_past_the_committed_tokens_become_the_window():
    drafter = JacobiDrafter(window=4)
    drafter.reset([3, 9], Sampler(SamplingConfig()))
    draft = drafter.propose([3, 9], budget=8)
    # the first guess (9) is rejected and the root's prediction 11 committed; rows 1.. predict the token
    # after each guess, i.e. depths 1.. below the new root 11
    drafter.observe([11], rows_predicting([11, 12, 13, 14, 15]), draft, [])
    assert drafter.guesses == [12, 13, 14, 15]
    draft = drafter.propose([3, 9, 11], budget=8)
    # two guesses accepted (12, 13) and 20 committed after them: rows 3 and 4 predict the new root's next
    drafter.observe([12, 13, 20], rows_predicting([12, 13, 20, 21, 22]), draft, [0, 1])
    assert drafter.guesses == [21, 22, 22, 22]


def test_a_tree_from_another_drafter_leaves_only_the_filler():
    drafter = JacobiDrafter(window=3)
    drafter.reset([1], Sampler(SamplingConfig()))
    drafter.observe([7], rows_predicting([7, 8, 9]), Draft([5, 6], [-1, -1]), [])
    assert drafter.guesses == [7, 7, 7]


def test_window_must_be_positive():
    with pytest.raises(UserError):
        JacobiDrafter(window=0)
