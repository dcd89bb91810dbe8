"""The online n-gram drafter: counts, backoff, the best-first tree and its sizing."""

import pytest

from decodekit.drafting.cost_curve import CostCurve
from decodekit.drafting.ngram import BACKOFF, NGramCounts, NGramDrafter
from decodekit.errors import UserError
from decodekit.sampling import SamplingConfig
from decodekit.sampling import Sampler

FREE = CostCurve((1, 512), (1.0, 1.0))  # extra tokens cost nothing: keep every node found


def test_counts_follow_the_history_and_back_off_to_bigrams():
    counts = NGramCounts()
    counts.add([], [1, 2, 3, 1, 2, 4])
    counts.add([2, 4], [1, 2, 3])  # continues the text: (2, 4) -> 1, (4, 1) -> 2, (1, 2) -> 3
    assert dict(counts.next[(1, 2)]) == {3: 2, 4: 1}
    assert dict(counts.next[(4,)]) == {1: 1}
    assert counts.candidates(1, 2, branch=4) == [(3, 2 / 4), (4, 1 / 4)]
    assert counts.candidates(1, 2, branch=1) == [(3, 2 / 4)]
    assert counts.candidates(9, 4, branch=4) == [(1, BACKOFF * 1 / 2)]  # (9, 4) unseen: bigram of 4
    assert counts.candidates(None, 7, branch=4) == []


def test_draft_is_a_best_first_tree_of_the_counts():
    drafter = NGramDrafter(NGramCounts(), FREE, max_tree=6)
    drafter.reset([1, 2, 3, 4, 1, 2, 3, 5, 1, 2], Sampler(SamplingConfig()))
    draft = drafter.propose([1, 2, 3, 4, 1, 2, 3, 5, 1, 2], budget=8)
    # (1, 2) -> 3 twice; then (2, 3) -> 4 or 5; then (3, 4) -> 1 and (3, 5) -> 1 ...
    assert draft.tokens[0] == 3 and draft.parents[0] == -1
    assert sorted(draft.tokens[1:3]) == [4, 5] and draft.parents[1:3] == [0, 0]
    assert len(draft) == 6 and draft.q is None
    assert all(parent < node for node, parent in enumerate(draft.parents))
    assert len(drafter.propose([1, 2, 3, 4, 1, 2, 3, 5, 1, 2], budget=2)) == 2
    assert len(drafter.propose([77, 78], budget=8)) == 0


def test_observe_extends_the_counts_across_steps_and_requests():
    counts = NGramCounts()
    drafter = NGramDrafter(counts, tree_size=4)
    drafter.reset([10, 11], Sampler(SamplingConfig()))
    drafter.observe([12], None, None, [])
    drafter.observe([13, 14], None, None, [])
    assert dict(counts.next[(11, 12)]) == {13: 1} and dict(counts.next[(12, 13)]) == {14: 1}
    again = NGramDrafter(counts, tree_size=4)  # the next request keeps what the first one saw
    again.reset([5, 10, 11], Sampler(SamplingConfig()))
    assert again.propose([5, 10, 11], budget=4).tokens == [12, 13, 14]


def test_cost_curve_trims_unprofitable_nodes():
    dear = CostCurve((1, 2), (1.0, 2.0))
    drafter = NGramDrafter(NGramCounts(), dear)
    drafter.reset([1, 2, 1, 2, 1, 2], Sampler(SamplingConfig()))
    assert len(drafter.propose([1, 2, 1, 2, 1, 2], budget=8)) == 0


def test_options_are_checked():
    with pytest.raises(UserError):
        NGramDrafter(NGramCounts(), tree_size=0)
    with pytest.raises(UserError):
        NGramDrafter(NGramCounts(), FREE, branch=0)
    with pytest.raises(ValueError):
        NGramDrafter(NGramCounts())
