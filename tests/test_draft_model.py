"""The `draft` method: a draft model's chain, its own cache kept in step, text bridging between tokenizers,
exact sampling, and clear errors for draft models that cannot be used."""

import copy
import itertools
import os
import subprocess
import sys

import pytest
from identity import ar_reference
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from decodekit.api import generate
from decodekit.drafting.draft_model import DraftModelDrafter, StopRule
from decodekit.core import DecodeRequest
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding
from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.models.loaded import LoadedModel
from building import target_probs
from decodekit.sampling import SamplingConfig
from prompts import PROMPTS
from scipy.stats import chisquare
from test_speculative_exactness import TableBackend
from tiny import EOS, tiny_model
from decodekit.sampling import Sampler
from building import drafter_of
from user_errors import error_lines

PROMPTS_TINY = [[5, 9, 3, 17, 22], [1, 2, 3, 4, 5, 6, 7], [40, 41], [8, 8, 8, 8, 9]]
RULES = [StopRule("confidence", 0.3), StopRule("entropy", 0.3), StopRule("none", 0.0)]


def perturbed(model: LoadedModel, scale: float, seed: int) -> LoadedModel:
    """A copy of `model` with noise on every weight: a draft model that agrees with it only some of the time."""
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in twin.model.parameters():
            parameter.add_(scale * parameter.std() * torch.randn(parameter.shape, generator=generator))
    twin.name = f"{model.name}-perturbed"
    return twin


def renumbered(model: LoadedModel, seed: int) -> LoadedModel:
    """The same network under another tokenizer: the words keep their text but get other ids (a random
    permutation; <eos> stays 0), so a draft is only right if it is bridged through text."""
    size = model.vocab_size
    order = [0] + (torch.randperm(size - 1, generator=torch.Generator().manual_seed(seed)) + 1).tolist()
    core = Tokenizer(models.WordLevel({"<eos>": EOS, **{f"w{order[i]}": i for i in range(1, size)}},
                                      unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for weights in (twin.model.model.embed_tokens.weight, twin.model.lm_head.weight):
            weights.copy_(weights[order])
    twin.tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")
    twin.name = f"{model.name}-renumbered"
    return twin


def run(model, prompt, drafter, n=40, sampling=None, method="draft"):
    request = DecodeRequest(list(prompt), n, sampling or SamplingConfig(), num_draft=6)
    return Decoding(model, request, Decoder(drafter), method).run()


@pytest.fixture(scope="module")
def target():
    model = tiny_model(64, seed=0, layers=4)
    model.eos_token_ids = frozenset()  # run the whole length
    return model


def test_greedy_identity_on_tiny_models(target):
    drafts = [tiny_model(64, seed=1, layers=2), perturbed(target, 0.3, seed=2), target]
    references = [run(target, prompt, None, method="ar").token_ids for prompt in PROMPTS_TINY]  # once each
    accepted = 0
    for draft, rule, (prompt, reference) in itertools.product(drafts, RULES, zip(PROMPTS_TINY, references)):
        result = run(target, prompt, DraftModelDrafter(target, draft, rule))
        assert result.token_ids == reference, (draft.name, rule, prompt)
        assert result.draft_forward_passes > 0
        accepted += result.accepted_tokens
    assert accepted > 0


def test_the_target_drafting_for_itself_is_always_accepted(target):
    result = run(target, PROMPTS_TINY[0], DraftModelDrafter(target, target, StopRule("none", 0.0)))
    assert result.stats["acceptance_rate"] == 1.0
    assert result.stats["mean_accepted"] > 5


def fresh_chain(model, context, n):
    """The greedy chain computed with a full forward over the whole sequence for every token (no cache)."""
    tokens = []
    for _ in range(n):
        ids = context + tokens
        logits = model.backend.forward(torch.tensor(ids), torch.arange(len(ids)), model.backend.new_cache())
        tokens.append(int(logits[-1].argmax()))
    return tokens


def test_draft_cache_follows_the_committed_context(target):
    """Across steps (accepting part of a draft, then a token the draft did not propose), the draft cache holds
    exactly the drafter's tokens, and its drafts and q rows equal those of fresh forwards."""
    draft = perturbed(target, 0.3, seed=3)
    drafter = DraftModelDrafter(target, draft, StopRule("none", 0.0))
    drafter.reset(PROMPTS_TINY[1], Sampler(SamplingConfig()))
    context = list(PROMPTS_TINY[1])
    for step, keep in enumerate([2, 0, 5, 1]):
        proposal = drafter.propose(context, 5)
        assert proposal.tokens == fresh_chain(draft, context, 5)
        assert drafter.cached[: len(context)] == context and len(drafter.cached) == len(context) + 4
        assert drafter.cache.length == len(drafter.cached)
        other = (proposal.tokens[keep] + 1) % 64 if keep < 5 else 7
        context += proposal.tokens[:keep] + [other]
    passes = drafter.forward_passes
    drafter.reset(context, Sampler(SamplingConfig(temperature=1.0, seed=5)))
    drafter.propose(context[:-3], 3)
    q = drafter.propose(context, 3).q  # the cache keeps context[:-3], forwards the rest
    fresh = draft.backend.forward(torch.tensor(context), torch.arange(len(context)), draft.backend.new_cache())
    torch.testing.assert_close(q[0], fresh[-1].softmax(dim=-1), atol=1e-5, rtol=1e-4)
    assert drafter.forward_passes == 3 + 3 and passes == 4 * 5


def test_a_rejected_tail_is_truncated_not_reforwarded(target):
    drafter = DraftModelDrafter(target, perturbed(target, 0.3, seed=4), StopRule("none", 0.0))
    drafter.reset(PROMPTS_TINY[0], Sampler(SamplingConfig()))
    context = list(PROMPTS_TINY[0])
    first = drafter.propose(context, 4)
    before = drafter.forward_passes
    drafter.propose(context + first.tokens[:2] + [63], 4)
    assert drafter.forward_passes - before == 4  # one forward for the new token, three for the chain


def test_sampling_q_rows_use_the_same_warpers(target):
    sampling = SamplingConfig(temperature=0.7, top_k=5, repetition_penalty=1.3, seed=9)
    draft = perturbed(target, 0.3, seed=5)
    drafter = DraftModelDrafter(target, draft, StopRule("none", 0.0))
    drafter.reset(PROMPTS_TINY[0], Sampler(sampling))
    context = list(PROMPTS_TINY[0])
    proposal = drafter.propose(context, 3)
    assert proposal.q.shape == (3, 64)
    for i in range(3):
        ids = context + proposal.tokens[:i]
        logits = draft.backend.forward(torch.tensor(ids), torch.arange(len(ids)), draft.backend.new_cache())[-1:]
        expected = target_probs(logits, sampling, [ids])[0]
        torch.testing.assert_close(proposal.q[i], expected, atol=1e-5, rtol=1e-4)
        assert (proposal.q[i] > 0).sum() <= 5 and proposal.q[i, proposal.tokens[i]] > 0


def test_sampling_is_seeded_and_runs_to_the_end(target):
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, seed=11)
    draft = perturbed(target, 0.3, seed=6)
    first = run(target, PROMPTS_TINY[0], DraftModelDrafter(target, draft, StopRule()), sampling=sampling)
    second = run(target, PROMPTS_TINY[0], DraftModelDrafter(target, draft, StopRule()), sampling=sampling)
    assert first.token_ids == second.token_ids and len(first.token_ids) == 40


def test_stop_rules():
    peaked = torch.tensor([0.9, 0.05, 0.05])
    flat = torch.full((4,), 0.25)
    assert not StopRule("confidence", 0.3).stops(peaked) and StopRule("confidence", 0.3).stops(flat)
    assert not StopRule("entropy", 0.3).stops(peaked)  # H = 0.39 nats: sqrt(0.15 H) = 0.24
    assert StopRule("entropy", 0.3).stops(flat)  # H = 1.39 nats: sqrt(0.15 H) = 0.46
    assert not StopRule("none", 0.0).stops(flat)
    assert StopRule.parse() == StopRule("confidence", 0.3)
    assert StopRule.parse("entropy", None, 0.8) == StopRule("entropy", 0.3)
    assert StopRule.parse("confidence", 1, 0.8) == StopRule("confidence", 1.0)
    for kind, threshold in [("sometimes", None), ("confidence", 1.5), ("entropy", -1), ("none", "x"),
                            ("confidence", True)]:
        with pytest.raises(UserError):
            StopRule.parse(kind, threshold)


def test_cross_tokenizer_draft_is_bridged_through_text(target):
    """A draft model with another tokenizer but the target's network proposes the target's own greedy chain."""
    twin = renumbered(target, seed=1)
    assert not DraftModelDrafter(target, twin, StopRule()).shared
    for prompt in PROMPTS_TINY:
        reference = run(target, prompt, None, method="ar")
        result = run(target, prompt, DraftModelDrafter(target, twin, StopRule("none", 0.0)))
        assert result.token_ids == reference.token_ids
        assert result.stats["acceptance_rate"] == 1.0
    other = tiny_model(80, seed=7, layers=2)
    for prompt in PROMPTS_TINY:
        reference = run(target, prompt, None, method="ar")
        assert run(target, prompt, DraftModelDrafter(target, other, StopRule())).token_ids == reference.token_ids


def test_cross_tokenizer_sampling_gives_one_hot_drafts(target):
    drafter = DraftModelDrafter(target, renumbered(target, seed=2), StopRule("none", 0.0))
    drafter.reset(PROMPTS_TINY[0], Sampler(SamplingConfig(temperature=1.0, seed=3)))
    proposal = drafter.propose(list(PROMPTS_TINY[0]), 4)
    assert proposal.q is None and len(proposal.tokens) == 4


class _NoEncode:
    """A tokenizer that can decode but not encode."""

    eos_token_id = EOS

    def decode(self, ids, **kwargs):
        return " ".join(f"w{i}" for i in ids)


def test_unbridgeable_and_unloadable_draft_models_are_user_errors(target):
    crippled = tiny_model(80, seed=8, layers=2)
    crippled.tokenizer = _NoEncode()
    with pytest.raises(UserError, match="cannot encode and decode"):
        DraftModelDrafter(target, crippled, StopRule())
    with pytest.raises(UserError, match="unknown model 'nosuch'"):  # checked before any model loads
        get_method("draft", {"draft_model": "nosuch"})
    with pytest.raises(UserError, match="unknown model 'nosuch'") as error:  # building checks before loading
        drafter_of("draft", target, {"draft_model": "nosuch"})
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="needs --draft-model"):
        drafter_of("draft", target, {})
    with pytest.raises(UserError, match="stop_rule"):
        drafter_of("draft", target, {"draft_model": target.name, "stop_rule": "never"})
    with pytest.raises(UserError, match="does not take"):
        get_method("draft", {"skip_layers": "1-2"})


# Exact sampling: the harness of test_speculative_exactness.py, with our drafter and repetition penalty on.

V = 5
PROMPT = [1, 3]
RUNS = 5_000
SAMPLING = dict(temperature=0.9, top_k=4, top_p=0.9, repetition_penalty=1.3)


def exact_distribution(backend, sampling):
    probs = {}
    for outcome in itertools.product(range(V), repeat=3):
        p, context = 1.0, list(PROMPT)
        for token in outcome:
            p *= float(target_probs(backend.logits(tuple(context))[None], sampling, [context])[0, token])
            context.append(token)
        probs[outcome] = p
    return probs


def chi_square_p(counts, exact):
    """Rare outcomes (expected count below 5) are pooled; outcomes the target cannot produce are left out."""
    observed, expected, pooled = [], [], [0, 0.0]
    for outcome, p in exact.items():
        if 0 < p * RUNS < 5:
            pooled[0] += counts.get(outcome, 0)
            pooled[1] += p * RUNS
        elif p > 0:
            observed.append(counts.get(outcome, 0))
            expected.append(p * RUNS)
    if pooled[1] > 0:
        observed.append(pooled[0])
        expected.append(pooled[1])
    total = sum(observed)
    return chisquare(observed, [e * total / sum(expected) for e in expected]).pvalue


def table_model(vocab_size, seed):
    model = tiny_model(vocab_size=vocab_size, seed=seed, layers=1)
    model.eos_token_ids = frozenset()
    model.backend = TableBackend(model.model)
    return model


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids thread-pool synchronisation, which dominates here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.statistical
@pytest.mark.parametrize("draft_vocab", [V, V + 2])
def test_sampled_output_has_the_target_distribution(draft_vocab, one_thread):
    """Same tokenizer: a sampled chain with q. Another tokenizer: the bridged one-hot chain."""
    target, draft = table_model(V, 21), table_model(draft_vocab, 22)
    counts: dict[tuple[int, ...], int] = {}
    for seed in range(RUNS):
        sampling = SamplingConfig(seed=seed, **SAMPLING)
        drafter = DraftModelDrafter(target, draft, StopRule("none", 0.0))
        result = run(target, PROMPT, drafter, n=4, sampling=sampling)
        key = tuple(result.token_ids[:3])
        counts[key] = counts.get(key, 0) + 1
    assert drafter.shared == (draft_vocab == V)
    exact = exact_distribution(target.backend, SamplingConfig(**SAMPLING))
    assert not [o for o in counts if exact[o] == 0]
    assert chi_square_p(counts, exact) > 0.001


# The embedded models.

def reference(model, prompt, n):
    return ar_reference(model, prompt, n)


@pytest.mark.integration
def test_embedded_greedy_identity_drafting_for_itself(smollm2_f32):
    tokens = steps = 0
    for prompt in PROMPTS[::2]:  # at 48 tokens: the run's shared `ar` references
        result = generate(prompt, smollm2_f32, method="draft", max_new_tokens=48, draft_model="smollm2-135m")
        assert result.token_ids == reference(smollm2_f32, prompt, 48), prompt
        tokens += len(result.token_ids)
        steps += len(result.steps)
    print(f"\ndraft smollm2-135m -> smollm2-135m: {tokens / steps:.2f} tokens per target forward")


@pytest.mark.integration
def test_embedded_cross_tokenizer_greedy_identity(gemma_f32):
    gemma = gemma_f32
    tokens = steps = 0
    for prompt in PROMPTS[:4]:
        result = generate(prompt, gemma, method="draft", max_new_tokens=32)  # default draft: smollm2-135m
        assert result.token_ids == reference(gemma, prompt, 32), prompt
        tokens += len(result.token_ids)
        steps += len(result.steps)
    print(f"\ndraft smollm2-135m -> gemma3-270m: {tokens / steps:.2f} tokens per target forward")


@pytest.mark.integration
def test_cli_unloadable_draft_model_exits_2_with_one_line():
    result = subprocess.run([sys.executable, "-m", "decodekit", "generate", "hi", "--method", "draft",
                             "--draft-model", "nosuch", "--max-new-tokens", "4"],
                            capture_output=True, text=True, timeout=600, env={**os.environ})
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "nosuch" in lines[0] and "Traceback" not in result.stderr
