"""Contrastive Decoding and the plausibility heads: the rule on hand-made logits, option checks before any
load, determinism, and greedy identity under a drafter (with a wrong variant that fails it)."""

import math

import pytest
import torch
from tiny import tiny_model

from decodekit.api import generate
from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.quality.contrastive import ContrastiveProcessor, contrastive_scores
from decodekit.quality.context import ModelContext
from decodekit.quality.plausibility import adaptive_head, fixed_head
from decodekit.core import DecodeRequest
from decodekit.methods.registry import build_decoder
from decodekit.session import Session
from decodekit.speculative.decoding import Decoding
from quality_helpers import ScatterDrafter, run

PROMPTS = [[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]


@pytest.fixture(scope="module")
def pair():
    return tiny_model(64, seed=0, layers=2), tiny_model(64, seed=1, layers=1)


def test_scores_inside_the_fixed_head():
    expert = torch.tensor([[0.5, 0.3, 0.17, 0.03]]).log()
    amateur = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).log()
    scores = contrastive_scores(expert, amateur, alpha=0.1, beta=0.5)
    assert scores[0, 3] == float("-inf")  # 0.03 < 0.1 * 0.5: outside the head
    expected = [math.log(0.5) - 0.5 * math.log(0.7), math.log(0.3) - 0.5 * math.log(0.1),
                math.log(0.17) - 0.5 * math.log(0.1)]
    assert scores[0, :3].tolist() == pytest.approx(expected, abs=1e-5)
    assert int(scores.argmax()) == 1  # the amateur's favourite loses to the expert's second choice
    assert fixed_head(expert, 0.1).tolist() == [[True, True, True, False]]


def test_adaptive_head_follows_the_perplexity():
    peaked = torch.tensor([[0.97, 0.015, 0.01, 0.005]]).log()  # exp(H) = 1.17: one token
    flat4 = torch.tensor([[0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0]]).log()
    two = torch.tensor([[0.6, 0.4, 0.0, 0.0]]).log()  # exp(H) = 1.96: two tokens
    assert adaptive_head(peaked).tolist() == [[True, False, False, False]]
    assert adaptive_head(flat4).tolist() == [[True] * 4 + [False] * 4]
    assert adaptive_head(two).tolist() == [[True, True, False, False]]
    rows = torch.cat([peaked, two])  # row by row
    assert adaptive_head(rows).sum(dim=-1).tolist() == [1, 2]


@pytest.mark.parametrize("options", [{"alpha": 0}, {"alpha": 1.5}, {"beta": -1}, {"beta": "x"},
                                     {"plausibility": "sometimes"}, {"drafter": "draft"},
                                     {"amateur_model": "no-such-model"}, {"amateur_model": ""}, {"gamma": 1}])
def test_bad_options_fail_before_loading(options):
    with pytest.raises(UserError):
        get_method("contrastive", options)


def test_amateur_needed_and_same_vocabulary(pair):
    expert, _ = pair
    with pytest.raises(UserError, match="needs the option amateur_model"):
        generate([1, 2, 3], expert, method="contrastive", max_new_tokens=2)
    with pytest.raises(UserError, match="another tokenizer"):
        generate([1, 2, 3], expert, method="contrastive", amateur_model=tiny_model(48, seed=2, layers=1),
                 max_new_tokens=2)


def test_greedy_deterministic_and_different_from_ar(pair):
    expert, amateur = pair
    runs = [generate(PROMPTS[1], expert, method="contrastive", amateur_model=amateur, max_new_tokens=24).token_ids
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0] != generate(PROMPTS[1], expert, method="ar", max_new_tokens=24).token_ids


@pytest.mark.parametrize("backend", ["transformers", "lean"])
@pytest.mark.parametrize("drafter", ["pld", "ngram"])
def test_greedy_identity_under_a_drafter(backend, drafter):
    expert, amateur = tiny_model(64, seed=0, layers=2, backend=backend), tiny_model(64, seed=1, layers=1,
                                                                                    backend=backend)
    for prompt in PROMPTS:
        alone = generate(prompt, expert, method="contrastive", amateur_model=amateur, max_new_tokens=40)
        drafted = generate(prompt, expert, method="contrastive", amateur_model=amateur, drafter=drafter,
                           max_new_tokens=40)
        assert drafted.token_ids == alone.token_ids
        assert drafted.accepted_tokens > 0  # the drafter's tokens were accepted: the tree path was exercised
        assert len(drafted.steps) < len(alone.steps)


def test_adaptive_plausibility_identity_under_pld(pair):
    expert, amateur = pair
    alone = generate(PROMPTS[0], expert, method="contrastive", amateur_model=amateur, plausibility="adaptive",
                     max_new_tokens=32)
    drafted = generate(PROMPTS[0], expert, method="contrastive", amateur_model=amateur, plausibility="adaptive",
                       drafter="pld", max_new_tokens=32)
    assert drafted.token_ids == alone.token_ids


STRONG = {"alpha": 0.001, "beta": 1.0}  # a wide head and a strong contrast: the amateur decides many tokens


@pytest.mark.parametrize("backend", ["transformers", "lean"])
def test_identity_under_scattered_trees(backend):
    """Trees of mostly wrong tokens: the amateur forwards them and must drop all but the accepted path."""
    expert, amateur = tiny_model(64, seed=0, layers=2, backend=backend), tiny_model(64, seed=1, layers=1,
                                                                                    backend=backend)
    for prompt in PROMPTS:
        alone = run(expert, "contrastive", prompt, 40, amateur_model=amateur, **STRONG)
        assert alone.token_ids != run(expert, "ar", prompt, 40).token_ids  # the amateur matters here
        treed = run(expert, "contrastive", prompt, 40, ScatterDrafter(64), amateur_model=amateur, **STRONG)
        assert treed.token_ids == alone.token_ids
        assert sum(len(step.drafted) for step in treed.steps) > 5 * len(treed.steps)


class _NotRolledBack(ModelContext):
    """The wrong variant: accept advances the text but leaves the whole draft tree in the cache."""

    def accept(self, tokens):
        self.past = self.cache.length  # every node stays, rejected ones included, in tree order
        self.root = tokens[-1]
        self.nodes, self.rows = {}, {}


def test_an_amateur_cache_out_of_step_breaks_identity(pair):
    expert, amateur = pair

    class Wrong(ContrastiveProcessor):
        def __init__(self):
            super().__init__(amateur, **STRONG)
            self.context = _NotRolledBack(amateur)

    mismatches = 0
    for prompt in PROMPTS:
        good = run(expert, "contrastive", prompt, 40, amateur_model=amateur, **STRONG)
        decoder = build_decoder("contrastive", expert, Session(), {"amateur_model": amateur, **STRONG})
        decoder.drafter, decoder.make_processors = ScatterDrafter(64), lambda: [Wrong()]
        bad = Decoding(expert, DecodeRequest(prompt, 40), decoder, "wrong").run()
        mismatches += bad.token_ids != good.token_ids
    assert mismatches > 0  # (on this pair: one prompt of the two; the other never attends a stale node)
