"""`pld`: what prompt lookup proposes for given texts, the trie's shape and budget, and greedy identity."""

import random

import pytest

from decodekit.api import generate
from decodekit.drafting.prompt_lookup import PromptLookupDrafter
from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.sampling import SamplingConfig
from identity import greedy_mismatches
from prompts import PROMPTS
from tiny import tiny_model
from decodekit.sampling import Sampler
from building import drafter_of

GREEDY = Sampler()


def proposal(context, budget=8, **params):
    drafter = PromptLookupDrafter(**params)
    drafter.reset(context, GREEDY)
    draft = drafter.propose(context, budget)
    return draft.tokens, draft.parents


def chain(tokens):
    return list(tokens), list(range(-1, len(tokens) - 1))


def root_paths(tokens, parents):
    paths = []
    for node in range(len(tokens)):
        path = []
        while node >= 0:
            path.append(tokens[node])
            node = parents[node]
        paths.append(path[::-1])
    return paths


def test_no_earlier_occurrence_proposes_nothing():
    assert proposal([1, 2, 3, 4]) == ([], [])
    assert proposal([7]) == ([], [])


def test_single_match_is_a_chain_of_what_followed():
    assert proposal([1, 2, 3, 9, 8, 7, 6, 5, 4, 0, 1, 2, 3]) == chain([9, 8, 7, 6, 5, 4, 0, 1])
    assert proposal([1, 2, 3, 9, 8, 7, 1, 2, 3], budget=2) == chain([9, 8])


def test_falls_back_to_shorter_ngrams_down_to_min_ngram():
    assert proposal([5, 6, 7, 9, 4, 7], budget=3) == chain([9, 4, 7])
    assert proposal([5, 6, 7, 9, 4, 7], min_ngram=2) == ([], [])


def test_the_longest_matching_ngram_wins_over_more_frequent_shorter_ones():
    # [4, 7] occurs once before; [7] alone occurs three times before, each followed by something else.
    assert proposal([7, 1, 7, 2, 4, 7, 3, 9, 4, 7], budget=4) == chain([3, 9, 4, 7])


def test_the_matched_ngram_length_is_kept_for_auto():
    drafter = PromptLookupDrafter()
    for context, n in (([7, 1, 7, 2, 4, 7, 3, 9, 4, 7], 2), ([1, 2, 3, 5, 1, 2, 3], 3), ([1, 2, 3], 0)):
        drafter.reset(context, GREEDY)
        drafter.propose(context, 4)
        assert drafter.match_length == n


def test_a_copy_reaching_the_end_of_the_text_goes_on_copying_itself():
    assert proposal([1, 2, 3, 9, 8, 7, 1, 2, 3]) == chain([9, 8, 7, 1, 2, 3, 9, 8])
    assert proposal([5, 6, 7, 9, 4, 7]) == chain([9, 4, 7, 9, 4, 7, 9, 4])
    assert proposal([5, 1, 1, 1, 1], budget=5) == chain([1] * 5)  # [1, 1, 1] ended at index 3: one 1 follows
    assert proposal([5, 1, 1, 1, 1, 1, 1]) == chain([1] * 8)  # three overlapping matches, one path


def test_different_continuations_form_a_trie_of_counted_prefixes():
    context = [1, 2, 5, 6, 7, 1, 2, 5, 6, 8, 1, 2]
    # after [1, 2]: most recently 5 6 8 1 2 (5), before that 5 6 7 1 2 5; the shared 5 6 has count 2.
    tokens, parents = proposal(context, budget=6, max_ngram=2)
    assert tokens == [5, 6, 8, 7, 1, 1]
    assert parents == [-1, 0, 1, 1, 2, 3]


def test_a_deep_node_many_matches_share_beats_a_shallow_single_one():
    context = [3, 4, 4, 3, 4, 4, 3, 5, 3]
    # after [3], 4 tokens: 5 3 (5 3) | 4 4 3 5 | 4 4 3 4 -> 4, 4, 3 (count 2 each) come before 5 (count 1)
    tokens, parents = proposal(context, budget=4, max_ngram=1)
    assert (tokens, parents) == ([4, 4, 3, 5], [-1, 0, 1, -1])


def test_max_matches_keeps_the_most_recent_occurrences():
    context = [9, 1, 8, 1, 7, 1]
    assert proposal(context, budget=1, max_matches=1) == ([7], [-1])
    tokens, parents = proposal(context, budget=2, max_matches=2)
    assert tokens == [7, 8] and parents == [-1, -1]


@pytest.mark.parametrize("seed", range(30))
def test_random_texts_give_valid_trees_within_budget(seed):
    rng = random.Random(seed)
    context = [rng.randrange(4) for _ in range(rng.randrange(1, 80))]
    budget = rng.randrange(1, 12)
    drafter = PromptLookupDrafter()
    drafter.reset(context, GREEDY)
    draft = drafter.propose(context, budget)
    continuations = drafter.continuations(budget)
    assert len(draft) <= budget
    assert len(draft) == min(budget, len({tuple(c[:k]) for c in continuations for k in range(1, len(c) + 1)}))
    assert all(-1 <= p < i for i, p in enumerate(draft.parents))
    siblings = [(p, t) for p, t in zip(draft.parents, draft.tokens)]
    assert len(set(siblings)) == len(siblings)
    for path in root_paths(draft.tokens, draft.parents):
        assert any(c[: len(path)] == path for c in continuations)
    if len(context) > 1 and context[-1] in context[:-1]:
        assert continuations and len(draft) >= 1


def test_observing_committed_tokens_equals_a_fresh_reset():
    rng = random.Random(7)
    text = [rng.randrange(5) for _ in range(120)]
    drafter = PromptLookupDrafter()
    drafter.reset(text[:10], GREEDY)
    position = 10
    while position < len(text):
        step = text[position: position + rng.randrange(1, 5)]
        drafter.observe(step, None, None, [])
        position += len(step)
        fresh = proposal(text[:position])
        draft = drafter.propose(text[:position], 8)
        assert (draft.tokens, draft.parents) == fresh


def test_propose_on_an_unobserved_context_is_an_error():
    drafter = PromptLookupDrafter()
    drafter.reset([1, 2, 1], GREEDY)
    with pytest.raises(RuntimeError):
        drafter.propose([1, 2, 1, 2], 8)


def test_bad_parameters_are_user_errors():
    with pytest.raises(UserError):
        PromptLookupDrafter(max_ngram=2, min_ngram=3)
    with pytest.raises(UserError):
        PromptLookupDrafter(min_ngram=0)
    with pytest.raises(UserError):
        PromptLookupDrafter(max_matches=0)
    with pytest.raises(UserError):
        get_method("pld", {"corpus": "x.txt"})
    with pytest.raises(UserError):
        get_method("pld", {"max_ngram": "three"})
    assert drafter_of("pld", None, {"max_ngram": 4}).max_ngram == 4


def tiny_ids(prompt: str, vocab_size: int) -> list[int]:
    """A shared prompt as tiny-vocabulary ids: each word hashed to a word id, so repeated words repeat."""
    return [1 + sum(map(ord, word)) % (vocab_size - 1) for word in prompt.lower().split()]


def test_greedy_identity_on_the_tiny_model():
    model = tiny_model(vocab_size=64, seed=11)
    model.eos_token_ids = frozenset()
    prompts = [tiny_ids(p, 64) for p in PROMPTS]
    assert greedy_mismatches(model, "pld", prompts) == []
    assert greedy_mismatches(model, "pld", prompts[:6], num_draft=3, max_ngram=2) == []


def test_sampling_runs_with_trees_and_is_reproducible():
    model = tiny_model(vocab_size=64, seed=12)
    model.eos_token_ids = frozenset()
    sampling = SamplingConfig(temperature=0.8, seed=3)
    runs = [generate(tiny_ids(PROMPTS[7], 64), model, method="pld", max_new_tokens=48, sampling=sampling)
            for _ in range(2)]
    assert runs[0].token_ids == runs[1].token_ids and len(runs[0].token_ids) == 48


@pytest.mark.integration
def test_greedy_identity_on_the_embedded_model(smollm2_f32):
    assert len(PROMPTS) >= 20
    assert greedy_mismatches(smollm2_f32, "pld", PROMPTS, max_new_tokens=48) == []
