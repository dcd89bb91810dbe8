"""Sampling under a grammar through draft-and-verify has exactly the constrained target's distribution.

The target: a tiny random Llama over the characters a-e and end-of-sequence, constrained by the regular
expression (ab|c[de]|[de]a)(b|c)? (so the grammar forces "b" after a first "a", "a" after a first "d" or "e",
and end-of-sequence after three characters), with temperature, top-k and top-p on. Its distribution over
whole outputs is enumerated with an independent mask (the prefixes of the finite language, in Python), and
10,000 seeded runs of each drafter are compared with it by a chi-square test at significance 0.001: one-hot
chains and trees whose nodes the grammar partly forbids (pruned before the forward), chains and trees sampled
from a second model's q restricted by the same grammar (p and q both restricted), and the real draft-model
drafter. The grammar's forced tokens enter every run as grafted draft nodes. Two deliberately wrong
applications must fail the same test: masking every verification row with the root's grammar state, and a
drafter whose q ignores the grammar while p obeys it. The loop, the verifier, the grammar processor and the
cache edits are the real ones; only the forward is served from a table of the tiny model's logits.
"""


import pytest
import torch

from constrain_tiny import char_model
from decodekit.constrain import Grammar, GrammarProcessor
from decodekit.core import DecodeRequest
from decodekit.drafting.base import Draft
from decodekit.drafting.draft_model import ChainDrafter, StopRule
from decodekit.sampling import SamplingConfig, warp
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding
from chi_square import pooled_chi_square_p
from table_backend import TableBackend

pytestmark = pytest.mark.statistical

V = 6  # <eos>, a, b, c, d, e
EOS = 0
PATTERN = r"(ab|c[de]|[de]a)(b|c)?"
LANGUAGE = [head + tail for head in ("ab", "cd", "ce", "da", "ea") for tail in ("", "b", "c")]
PROMPT = [1, 3]
RUNS = 10_000
SAMPLING = dict(temperature=0.9, top_k=4, top_p=0.9)
ALPHA = 0.001
LETTERS = " abcde"


class ShapedDrafter:
    """Drafts of a given shape: tokens fixed (one-hot; the grammar forbids some) or sampled from a second
    model's q, taken through the request's sampler (its grammar included) unless `raw_q`."""

    def __init__(self, shape: str, draft_backend: TableBackend, raw_q: bool = False):
        self.shape = shape
        self.draft = draft_backend
        self.raw_q = raw_q
        self.forward_passes = 0

    def reset(self, prompt_ids, sampler):
        self.sampler = sampler
        self.generator = torch.Generator().manual_seed(sampler.seed + 10_000)

    def q(self, context, path):
        logits = self.draft.logits(tuple(context) + tuple(path))[None]
        if self.raw_q:  # the bug: q warped but not constrained, while p is
            return warp(logits, self.sampler.config).softmax(dim=-1)[0]
        return self.sampler.probs(logits, [list(path)])[0]

    def sample(self, q):
        return int(torch.multinomial(q, 1, generator=self.generator))

    def propose(self, context, budget):
        draft = self.full_draft(context)
        q = None if draft.q is None else draft.q[:budget]
        return Draft(draft.tokens[:budget], draft.parents[:budget], q)

    def full_draft(self, context):
        last = context[-1]
        if self.shape == "chain_onehot":
            return Draft.chain([(last + 1) % V, (last + 2) % V, (last + 3) % V])
        if self.shape == "tree_onehot":  # three siblings under the root, the second with a child
            return Draft([(last + k) % V for k in (1, 2, 3, 4)], [-1, -1, -1, 1])
        if self.shape == "chain_q":
            tokens, rows = [], []
            for _ in range(3):
                q = self.q(context, tokens)
                if not torch.isfinite(q).all() or q.sum() <= 0:
                    break
                tokens.append(self.sample(q))
                rows.append(q)
                if tokens[-1] == EOS:
                    break
            return Draft.chain(tokens, torch.stack(rows) if rows else None)
        if self.shape == "tree_q":  # two siblings drawn independently from q, each with one sampled child
            q_root = self.q(context, [])
            first, second = self.sample(q_root), self.sample(q_root)
            if EOS in (first, second):
                return Draft([first, second], [-1, -1], torch.stack([q_root, q_root]))
            q_a, q_b = self.q(context, [first]), self.q(context, [second])
            tokens = [first, second, self.sample(q_a), self.sample(q_b)]
            return Draft(tokens, [-1, -1, 0, 1], torch.stack([q_root, q_root, q_a, q_b]))
        raise ValueError(self.shape)

    def observe(self, committed, logits, draft, accepted):
        pass


def allowed_next(prefix: str) -> list[int]:
    """The grammar's mask, independently of llguidance: the tokens that keep `prefix` a prefix of LANGUAGE."""
    tokens = [LETTERS.index(c) for c in sorted({w[len(prefix)] for w in LANGUAGE
                                               if len(w) > len(prefix) and w.startswith(prefix)})]
    return tokens + ([EOS] if prefix in LANGUAGE else [])


def exact_distribution(backend, sampling):
    """Every output (its tokens, end-of-sequence included) with its probability under the constrained target."""
    probs = {}
    for word in LANGUAGE:
        p, context = 1.0, list(PROMPT)
        outcome = [LETTERS.index(c) for c in word] + [EOS]
        for i, token in enumerate(outcome):
            logits = backend.logits(tuple(context))
            masked = torch.full_like(logits, float("-inf"))
            allowed = allowed_next(word[:i])
            masked[allowed] = logits[allowed]
            p *= float(warp(masked[None], sampling).softmax(dim=-1)[0, token])
            context.append(token)
        probs[tuple(outcome)] = p
    return probs


def models():
    target = char_model(vocab_size=V, seed=21, layers=1)
    target.backend = TableBackend(target.model)
    drafting = char_model(vocab_size=V, seed=22, layers=1)
    drafting.backend = TableBackend(drafting.model)
    return target, drafting


def run_many(shape, runs=RUNS, raw_q=False):
    target, drafting = models()
    grammar = Grammar.regex(PATTERN)
    if shape == "draft":
        drafter = ChainDrafter(drafting, V, StopRule.parse("none"))
    else:
        drafter = ShapedDrafter(shape, drafting.backend, raw_q)
    counts: dict[tuple[int, ...], int] = {}
    for seed in range(runs):
        sampling = SamplingConfig(seed=seed, **SAMPLING)
        request = DecodeRequest(list(PROMPT), max_new_tokens=6, sampling=sampling, num_draft=4,
                                processors=[grammar])
        try:
            key = tuple(Decoding(target, request, Decoder(drafter=drafter), shape).run().token_ids)
        except RuntimeError:  # the grammar refused a committed token: an output the target cannot produce
            key = ("refused",)
        counts[key] = counts.get(key, 0) + 1
    return counts, exact_distribution(target.backend, SamplingConfig(**SAMPLING))


def chi_square_p(counts, exact, runs=RUNS):
    return pooled_chi_square_p(counts, exact, runs)


def impossible(counts, exact):
    return [outcome for outcome in counts if exact.get(outcome, 0.0) == 0.0]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_enumeration_is_a_distribution_that_the_grammar_shapes():
    target, _ = models()
    exact = exact_distribution(target.backend, SamplingConfig(**SAMPLING))
    assert abs(sum(exact.values()) - 1.0) < 1e-4
    assert sum(1 for p in exact.values() if p > 0.01) >= 4  # several outputs are likely, not one


@pytest.mark.parametrize("shape", ["chain_onehot", "tree_onehot", "chain_q", "tree_q", "draft"])
def test_constrained_sampling_has_the_constrained_target_distribution(shape):
    counts, exact = run_many(shape)
    assert not impossible(counts, exact), f"outputs the constrained target cannot produce: {impossible(counts, exact)}"
    assert chi_square_p(counts, exact) > ALPHA


def test_masking_every_row_with_the_root_state_fails(monkeypatch):
    original = GrammarProcessor.process
    monkeypatch.setattr(GrammarProcessor, "process",
                        lambda self, logits, paths: original(self, logits, [[] for _ in paths]))
    counts, exact = run_many("chain_onehot", runs=2_000)
    assert impossible(counts, exact) or chi_square_p(counts, exact, 2_000) < 1e-6


def test_a_q_that_ignores_the_grammar_fails():
    """p restricted, q not: the nodes q puts on forbidden tokens are pruned, which biases what is accepted."""
    counts, exact = run_many("chain_q", raw_q=True)
    assert not impossible(counts, exact)  # every output still obeys the grammar: only the distribution is off
    assert chi_square_p(counts, exact) < 1e-6
