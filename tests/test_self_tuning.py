"""The self-tuning methods end to end: greedy identity with `ar` (tiny model, embedded model in float32),
sampling through recycle and auto, and their options."""

import random

import pytest

from decodekit.api import generate
from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.sampling import SamplingConfig
from identity import greedy_mismatches
from prompts import PROMPTS
from tiny import tiny_model
from building import drafter_of
from decodekit.core import DecodeRequest
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding

METHOD_NAMES = ["recycle", "lookahead", "jacobi", "ngram", "hybrid", "auto"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(vocab_size=64, seed=3)


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    """Tiny models' cost curves go to a temporary cache, not the user's."""
    monkeypatch.setenv("DECODEKIT_CACHE", str(tmp_path))


def tiny_prompts():
    rng = random.Random(7)
    prompts = [[rng.randrange(1, 64) for _ in range(rng.randrange(2, 20))] for _ in range(6)]
    return prompts + [[5, 6, 7, 8, 9] * 4, [11]]


@pytest.mark.parametrize("num_draft", [8, 24])
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_tiny_greedy_identity(tiny, tiny_cache, method, num_draft):
    for prompt in tiny_prompts():
        reference = generate(prompt, tiny, method="ar", max_new_tokens=40)
        result = generate(prompt, tiny, method=method, max_new_tokens=40, num_draft=num_draft)
        assert result.token_ids == reference.token_ids, (method, prompt)


class Checked:
    """Wraps a drafter and checks every draft it makes: a valid tree of deterministic proposals."""

    forward_passes = 0

    def __init__(self, inner):
        self.inner = inner
        self.drafts = 0

    def reset(self, prompt_ids, sampling):
        self.inner.reset(prompt_ids, sampling)

    def propose(self, context, budget):
        draft = self.inner.propose(context, budget)
        assert isinstance(draft, Draft) and draft.q is None and len(draft) <= budget
        assert all(-1 <= parent < node for node, parent in enumerate(draft.parents))
        self.drafts += len(draft) > 0
        return draft

    def observe(self, committed, logits, draft, accepted):
        self.inner.observe(committed, logits, draft, accepted)


@pytest.mark.parametrize("method", ["recycle", "auto", "lookahead", "ngram", "hybrid"])
def test_sampling_runs_with_valid_deterministic_drafts(tiny, tiny_cache, method):
    sampling = SamplingConfig(temperature=0.9, top_p=0.95, seed=11)
    drafted = 0
    for prompt in tiny_prompts()[:4]:
        checked = Checked(drafter_of(method, tiny))
        result = Decoding(tiny, DecodeRequest(prompt, 40, sampling, num_draft=16), Decoder(checked), method).run()
        assert 1 <= len(result.token_ids) <= 40
        assert all(0 <= token < 64 for token in result.token_ids)
        drafted += checked.drafts
    assert drafted > 0


def test_options_are_validated_before_and_after_loading(tiny, tiny_cache):
    with pytest.raises(UserError, match="does not take"):
        get_method("recycle", {"window": 3})
    for method, options in [("recycle", {"topk": 2.5}), ("lookahead", {"window": "wide"}),
                            ("jacobi", {"window": True}), ("ngram", {"branch": "x"}),
                            ("hybrid", {"threshold": "x"}), ("auto", {"drafters": "nosuch"}),
                            ("auto", {"budgets": "0"}), ("auto", {"exploration": "lots"})]:
        with pytest.raises(UserError):
            get_method(method, options)  # before any model loads
    with pytest.raises(UserError, match="whole number"):
        drafter_of("recycle", tiny, {"tree_size": "big"})
    with pytest.raises(UserError, match="cannot draft with"):
        drafter_of("auto", tiny, {"drafters": "recycle,nosuch"})
    with pytest.raises(UserError, match="budgets"):
        drafter_of("auto", tiny, {"budgets": "4,x"})
    auto = drafter_of("auto", tiny, {"drafters": "recycle,ngram", "budgets": "4,12"})
    assert [str(arm) for arm in auto.stats.arms] == ["none", "recycle@4", "recycle@12", "ngram@4", "ngram@12"]
    assert drafter_of("recycle", tiny, {"tree_size": 5}).size == 0  # set on reset
    lookahead = drafter_of("lookahead", tiny, {"window": 3, "ngram": 2, "guesses": 2})
    assert (lookahead.window, lookahead.ngram, lookahead.guesses) == (3, 2, 2)


@pytest.mark.integration
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_embedded_greedy_identity(smollm2_f32, method):
    # every other prompt (each kind stays in; pld and sam are checked on all of them): the ar references are shared
    assert greedy_mismatches(smollm2_f32, method, PROMPTS[::2], max_new_tokens=48, num_draft=32) == []
