"""Sampling through draft-and-verify has exactly the target's distribution.

On a tiny random Llama with a 5-token vocabulary, the first 3 committed tokens of 6,000 seeded runs are
compared with the exact distribution (enumerated: 125 outcomes) by a chi-square test at significance
0.001, with temperature, top-k and top-p on, for chain drafts with draft probabilities q, one-hot chains,
trees whose nodes have several children (one-hot and sampled), and the real drafters whose trees learn
from the target across runs: Token Recycling's and `auto`'s bandit over pld, sam, recycle, ngram and
lookahead (with fixed tree sizes and budgets in place of the cost curve). The same holds with a stateful
logits processor in the chain (one that bans a token depending on each row's own history), and a
deliberately wrong acceptance rule, or the processor applied with the wrong histories, must fail the test. The loop, the verifier and the cache edits are the real ones; only the forward is
served from a table of the tiny model's logits, so 6,000 runs take seconds.
"""

import itertools

import pytest
import torch

import decodekit.speculative.step as step_module
import decodekit.speculative.verify as verify_module
from decodekit.core import DecodeRequest
from decodekit.drafting.bandit import NO_DRAFT, Arm, BanditDrafter, BanditStats
from decodekit.drafting.base import Draft
from decodekit.drafting.lookahead import LookaheadDrafter
from decodekit.drafting.ngram import NGramCounts, NGramDrafter
from decodekit.drafting.prompt_lookup import PromptLookupDrafter
from decodekit.drafting.suffix_automaton import SuffixAutomatonDrafter
from decodekit.drafting.token_recycling import RecycleDrafter, RecycleState
from decodekit.sampling import Processor, Sampler, SamplingConfig
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding
from decodekit.speculative.verify import Verdict
from tiny import tiny_model
from chi_square import pooled_chi_square_p
from table_backend import TableBackend

pytestmark = pytest.mark.statistical

V = 5
PROMPT = [1, 3]
RUNS = 6_000  # the wrong acceptance rule below fails with p = 0.0 (below float range) already at 4,000
SAMPLING = dict(temperature=0.9, top_k=4, top_p=0.9)
ALPHA = 0.001


class NoRepeat(Processor):
    """Bans the last token of each row's history: a processor whose effect depends on the path of every row."""

    def reset(self, prompt_ids):
        self.last = prompt_ids[-1]

    def accept(self, tokens):
        self.last = tokens[-1]

    def process(self, logits, paths):
        banned = torch.tensor([path[-1] if path else self.last for path in paths])
        out = logits.clone()
        out[torch.arange(len(paths)), banned] = float("-inf")
        return out


def target_probs(logits, sampling, context=(), processors=()):
    """The target distribution after `context` under `sampling` and fresh copies of `processors`."""
    sampler = Sampler(sampling, [type(p)() for p in processors])
    sampler.reset(list(context))
    return sampler.probs(logits, [[]] * logits.shape[0])


class ShapedDrafter:
    """Drafts of a given shape: tokens fixed (one-hot) or sampled from a second tiny model's warped q."""

    def __init__(self, shape: str, draft_backend: TableBackend):
        self.shape = shape
        self.draft = draft_backend

    def reset(self, prompt_ids, sampler):
        self.sampling = sampler.config
        self.generator = torch.Generator().manual_seed(sampler.seed + 10_000)

    def q(self, context):
        key = tuple(context)
        if key not in self.draft.q_memo:
            self.draft.q_memo[key] = target_probs(self.draft.logits(key)[None], self.sampling)[0]
        return self.draft.q_memo[key]

    def sample(self, q):
        return int(torch.multinomial(q, 1, generator=self.generator))

    def propose(self, context, budget):
        return limit(self.full_draft(context), budget)

    def full_draft(self, context):
        last = context[-1]
        if self.shape == "chain_q":  # a draft model's chain with its probabilities
            tokens, rows = [], []
            for _ in range(3):
                q = self.q(context + tokens)
                tokens.append(self.sample(q))
                rows.append(q)
            return Draft.chain(tokens, torch.stack(rows))
        if self.shape == "chain_onehot":  # a retrieval-style guess
            return Draft.chain([(last + 1) % V, (last + 2) % V, (last + 3) % V])
        if self.shape == "tree_onehot":  # three siblings under the root, the second with a child
            return Draft([(last + k) % V for k in (1, 2, 3, 4)], [-1, -1, -1, 1])
        if self.shape == "tree_q":  # two siblings drawn independently from q, each with one sampled child
            q_root = self.q(context)
            first, second = self.sample(q_root), self.sample(q_root)
            q_a, q_b = self.q(context + [first]), self.q(context + [second])
            tokens = [first, second, self.sample(q_a), self.sample(q_b)]
            return Draft(tokens, [-1, -1, 0, 1], torch.stack([q_root, q_root, q_a, q_b]))
        raise ValueError(self.shape)

    def observe(self, committed, logits, draft, accepted):
        pass

    forward_passes = 0


def learning_drafter(shape: str):
    """A real drafter that learns from the target across the runs (one instance serves all of them)."""
    if shape == "recycle":
        return RecycleDrafter(RecycleState(V, k=3), tree_size=4)
    if shape == "auto":
        drafters = {"pld": PromptLookupDrafter(), "sam": SuffixAutomatonDrafter(),
                    "recycle": RecycleDrafter(RecycleState(V, k=3), tree_size=4),
                    "ngram": NGramDrafter(NGramCounts(), tree_size=4), "lookahead": LookaheadDrafter(window=3)}
        arms = [Arm(NO_DRAFT, 0)] + [Arm(name, budget) for name in drafters for budget in (2, 4)]
        return BanditDrafter(drafters, BanditStats(arms))
    return None


def limit(draft: Draft, budget: int) -> Draft:
    """The first `budget` nodes: still a tree, since parents come before their children."""
    q = None if draft.q is None else draft.q[:budget]
    return Draft(draft.tokens[:budget], draft.parents[:budget], q)


def exact_distribution(backend, sampling, processors=()):
    probs = {}
    for outcome in itertools.product(range(V), repeat=3):
        p, context = 1.0, list(PROMPT)
        for token in outcome:
            p *= float(target_probs(backend.logits(tuple(context))[None], sampling, context, processors)[0, token])
            context.append(token)
        probs[outcome] = p
    return probs


def run_many(shape, runs=RUNS, processor=None):
    model = tiny_model(vocab_size=V, seed=21, layers=1)
    model.eos_token_ids = frozenset()
    model.backend = TableBackend(model.model)
    draft_backend = TableBackend(tiny_model(vocab_size=V, seed=22, layers=1).model)
    drafter = learning_drafter(shape) or ShapedDrafter(shape, draft_backend)
    counts: dict[tuple[int, ...], int] = {}
    for seed in range(runs):
        sampling = SamplingConfig(seed=seed, **SAMPLING)
        processors = [processor()] if processor else []
        request = DecodeRequest(list(PROMPT), max_new_tokens=5, sampling=sampling, num_draft=4, processors=processors)
        result = Decoding(model, request, Decoder(drafter), shape).run()
        key = tuple(result.token_ids[:3])
        counts[key] = counts.get(key, 0) + 1
    used = [processor()] if processor else []
    return counts, exact_distribution(model.backend, SamplingConfig(**SAMPLING), used)


def chi_square_p(counts, exact, runs=RUNS):
    assert sum(counts.values()) == runs
    return pooled_chi_square_p(counts, exact, runs)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids thread-pool synchronisation, which dominates here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", ["chain_q", "chain_onehot", "tree_onehot", "tree_q", "recycle", "auto"])
def test_committed_tokens_have_the_target_distribution(shape):
    counts, exact = run_many(shape)
    impossible = [o for o in counts if exact[o] == 0]
    assert not impossible, f"outcomes the target cannot produce: {impossible}"
    assert chi_square_p(counts, exact) > ALPHA


@pytest.mark.parametrize("shape", ["tree_onehot", "tree_q", "auto"])
def test_the_target_distribution_holds_with_a_processor_in_the_chain(shape):
    counts, exact = run_many(shape, processor=NoRepeat)
    impossible = [o for o in counts if exact[o] == 0]
    assert not impossible, f"outcomes the processed target cannot produce: {impossible}"
    assert chi_square_p(counts, exact) > ALPHA


def test_a_processor_applied_with_the_wrong_histories_fails(monkeypatch):
    """Every row processed as if it were the root (its path ignored): the exactness test must catch it."""
    monkeypatch.setattr(verify_module, "row_paths", lambda draft: [[] for _ in range(len(draft) + 1)])
    counts, exact = run_many("tree_onehot", runs=2_000, processor=NoRepeat)
    assert any(exact[o] == 0 for o in counts)  # it commits repeats that the processed target bans


def wrong_rule(draft, logits, sampler, generator=None):
    """Accepts a one-hot child with probability p(x) but, on rejection, samples from p instead of the residual."""
    probs = sampler.probs(logits, [[]] * logits.shape[0])
    row, accepted = 0, []
    while True:
        children = [n for n, parent in enumerate(draft.parents) if parent + 1 == row]
        chosen = next((c for c in children if torch.rand((), generator=generator) < probs[row, draft.tokens[c]]), None)
        if chosen is None:
            token = int(torch.multinomial(probs[row], 1, generator=generator))
            return Verdict(accepted, [draft.tokens[n] for n in accepted] + [token], [0] + [n + 1 for n in accepted])
        accepted.append(chosen)
        row = chosen + 1


def test_a_wrong_acceptance_rule_fails(monkeypatch):
    monkeypatch.setattr(step_module, "verify", wrong_rule)
    counts, exact = run_many("chain_onehot", runs=RUNS)
    assert chi_square_p(counts, exact) < 1e-6
