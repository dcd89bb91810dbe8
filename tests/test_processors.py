"""Stateful logits processors, the sampler chain, the output committer and the session on tiny models.

Greedy identity with a history-dependent processor in the chain: every lossless method gives `ar`'s tokens
under the same processor, and the processor applied with the wrong histories (every row as the root) makes
a method part from `ar` — so the identity test sees a wrong application.
"""

import pytest
import torch

import decodekit.speculative.verify as verify_module
from decodekit.api import generate
from decodekit.core.output import OutputCommitter
from decodekit.drafting.base import Draft
from decodekit.errors import ParameterError
from decodekit.sampling import Processor, RepetitionPenalty, Sampler, SamplingConfig
from decodekit.sampling.processors import apply_repetition_penalty
from decodekit.session import Session
from decodekit.speculative.tree import prune, row_paths
from tiny import EOS, tiny_model, tiny_tokenizer
from banning import BanFollowers

V = 48
PROMPTS = [[1, 2, 3, 1, 2, 3, 1, 2], [5, 6, 7, 5, 6, 7, 5], [9, 10, 11, 12, 9, 10, 11], [20, 21, 20, 21, 20]]


class Parity(Processor):
    """A hard constraint: after an even token only odd ones, after an odd one only even ones."""

    constrains = True

    def reset(self, prompt_ids):
        self.last = prompt_ids[-1]

    def accept(self, tokens):
        self.last = tokens[-1]

    def allows(self, path, token):
        return (token % 2) != ((path[-1] if path else self.last) % 2)

    def process(self, logits, paths):
        out = logits.clone()
        for row, path in enumerate(paths):
            last = path[-1] if path else self.last
            out[row, torch.arange(V) % 2 == last % 2] = float("-inf")
        return out


@pytest.fixture(scope="module")
def model():
    loaded = tiny_model(vocab_size=V, seed=31, layers=2)
    loaded.eos_token_ids = frozenset()
    return loaded


def greedy(model, prompt, method, processor, session):
    return generate(prompt, model, method=method, max_new_tokens=24, processors=[processor()],
                    session=session).token_ids


@pytest.mark.parametrize("processor", [BanFollowers, Parity])
def test_lossless_methods_keep_ar_tokens_under_a_processor(model, processor):
    session = Session()
    changed = 0
    for prompt in PROMPTS:
        reference = greedy(model, prompt, "ar", processor, session)
        changed += reference != generate(prompt, model, method="ar", max_new_tokens=24, session=session).token_ids
        for method in ("pld", "sam", "recycle", "ngram", "hybrid", "auto", "lookahead"):
            assert greedy(model, prompt, method, processor, session) == reference, (method, prompt)
    assert changed >= 2  # the processor does change the output


def test_a_processor_applied_with_the_wrong_histories_breaks_identity(model, monkeypatch):
    session = Session()
    references = [greedy(model, p, "ar", BanFollowers, session) for p in PROMPTS]
    monkeypatch.setattr(verify_module, "row_paths", lambda draft: [[] for _ in range(len(draft) + 1)])
    outputs = [greedy(model, p, "pld", BanFollowers, session) for p in PROMPTS]
    assert outputs != references


def test_constraints_prune_forbidden_draft_nodes():
    sampler = Sampler(processors=[Parity()])
    sampler.reset([4])  # the next token must be odd
    draft = Draft([3, 5, 6, 2, 7], [-1, 0, 0, -1, 1])  # 3 ok, 5 after 3 banned (same parity) with its child 7
    pruned = prune(draft, sampler)
    assert pruned.tokens == [3, 6] and pruned.parents == [-1, 0]
    assert prune(draft, Sampler()) is draft  # nothing constrains: the draft is untouched


def test_repetition_penalty_processor_follows_committed_text_and_paths():
    logits = torch.randn(3, 10)
    penalty = RepetitionPenalty(1.5)
    penalty.reset([1, 2])
    penalty.accept([3])
    processed = penalty.process(logits, [[], [4], [4, 5]])
    expected = apply_repetition_penalty(logits, 1.5, [{1, 2, 3}, {1, 2, 3, 4}, {1, 2, 3, 4, 5}])
    assert torch.equal(processed, expected)
    twin = penalty.clone()
    twin.accept([7])
    assert 7 in twin.seen and 7 not in penalty.seen


def test_the_sampler_orders_penalty_processors_warpers():
    sampler = Sampler(SamplingConfig(temperature=0.5, repetition_penalty=1.2), [BanFollowers()])
    assert [type(p).__name__ for p in sampler.chain] == ["RepetitionPenalty", "BanFollowers", "Warpers"]
    assert [type(p).__name__ for p in Sampler(SamplingConfig()).chain] == []
    assert not Sampler().constrains and Sampler(processors=[Parity()]).constrains
    draft = Draft([4, 5, 6], [-1, 0, -1])
    assert row_paths(draft) == [[], [4], [4, 5], [6]]


def test_output_committer_stops_at_eos_stop_strings_and_length():
    tokenizer = tiny_tokenizer(16)
    committed = OutputCommitter(tokenizer, frozenset({EOS}), (), limit=10)
    assert committed.push([3, 4, EOS, 5]).tokens == [3, 4, EOS] and committed.finish == "eos"
    assert committed.text == "w3 w4"
    stopping = OutputCommitter(tokenizer, frozenset({EOS}), ("w5",), limit=10)
    first = stopping.push([3, 4])
    second = stopping.push([5, 6])
    assert second.finish == "stop" and second.tokens == [5] and stopping.text == (first.delta + second.delta)
    assert not stopping.text.endswith("w5")
    limited = OutputCommitter(tokenizer, frozenset(), (), limit=3)
    assert limited.push([1, 2, 3, 4]).tokens == [1, 2, 3] and limited.finish == "length" and limited.room == 0
    with pytest.raises(RuntimeError):
        limited.push([1])


def test_two_sessions_share_nothing_and_restore_learning(model):
    first, second = Session(), Session()
    make = lambda: {"count": 0}  # noqa: E731
    state = first.learned(("k",), dict, scope="a")
    assert first.learned(("k",), dict, scope="a") is state
    assert second.learned(("k",), dict, scope="a") is not state and first.learned(("k",), dict) is not state
    assert first.kept(("x",), make) is first.kept(("x",), make) and second.kept(("x",), make) is not first.kept(
        ("x",), make)

    class Counter:
        def __init__(self):
            self.n = 0

    counter = first.learned(("c",), Counter, scope="b")
    saved = first.snapshot("b")
    counter.n = 5
    first.restore(saved, "b")
    assert counter.n == 0 and first.learned(("c",), Counter, scope="b") is counter
    late = first.learned(("late",), Counter, scope="b")
    late.n = 3
    first.restore(saved, "b")  # a state made after the snapshot is emptied
    assert late.n == 0


def test_parameter_errors_name_the_parameter():
    with pytest.raises(ParameterError) as error:
        SamplingConfig(top_p=1.5)
    assert error.value.parameter == "top_p" and error.value.message_for("--top-p").startswith("--top-p must")
    with pytest.raises(ParameterError, match="max_new_tokens"):
        generate([1, 2], tiny_model(vocab_size=16), max_new_tokens=0)
