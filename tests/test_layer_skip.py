"""The `layerskip` method: the transformers backend's skip_layers, the drafter's own cache, the calibration,
and greedy identity with plain decoding."""

import copy
import itertools

import pytest
import torch

from decodekit.api import generate
from decodekit.drafting.draft_model import StopRule
from decodekit.drafting.layer_skip import LayerSkipDrafter, candidate_sets, expected_speedup, parse_layers
from decodekit.core import DecodeRequest
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding
from decodekit.errors import UserError
from decodekit.methods import get_method
from building import target_probs
from decodekit.sampling import SamplingConfig
from prompts import PROMPTS
from tiny import tiny_model
from decodekit.sampling import Sampler
from building import drafter_of

PROMPTS_TINY = [[5, 9, 3, 17, 22], [1, 2, 3, 4, 5, 6, 7], [40, 41], [8, 8, 8, 8, 9]]


@pytest.fixture(scope="module")
def target():
    model = tiny_model(64, seed=0, layers=6)
    model.eos_token_ids = frozenset()
    return model


def fresh(model, ids, skip=None):
    backend = model.backend
    return backend.forward(torch.tensor(ids), torch.arange(len(ids)), backend.new_cache(), skip_layers=skip)


def test_skipping_a_layer_equals_a_layer_that_adds_nothing(target):
    """A Llama layer whose output projections are zero passes its input on unchanged."""
    silenced = copy.deepcopy(target)
    with torch.no_grad():
        for index in (2, 3):
            layer = silenced.model.model.layers[index]
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    ids = PROMPTS_TINY[1]
    torch.testing.assert_close(fresh(target, ids, frozenset({2, 3})), fresh(silenced, ids))
    assert not torch.allclose(fresh(target, ids, frozenset({2, 3})), fresh(target, ids))


def test_skipped_layers_keep_their_cache_and_chunks_equal_one_pass(target):
    backend = target.backend
    ids = PROMPTS_TINY[1]
    skip = frozenset({1, 4})
    cache = backend.new_cache()
    backend.forward(torch.tensor(ids[:4]), torch.arange(4), cache)  # all layers: 4 positions
    backend.forward(torch.tensor(ids[4:6]), 4 + torch.arange(2), cache, skip_layers=skip)
    last = backend.forward(torch.tensor(ids[6:]), torch.tensor([6]), cache, skip_layers=skip)
    assert [cache.get_seq_length(i) for i in range(6)] == [7, 4, 7, 7, 4, 7]
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    cache.truncate(4)
    tree = backend.forward(torch.tensor(ids[4:]), 4 + torch.arange(3), cache, tree_mask=mask, skip_layers=skip)
    assert [cache.get_seq_length(i) for i in range(6)] == [7, 4, 7, 7, 4, 7]
    torch.testing.assert_close(tree[-1], last[-1])
    # with the skip path from the start, cached chunks equal one pass
    cache = backend.new_cache()
    backend.forward(torch.tensor(ids[:5]), torch.arange(5), cache, skip_layers=skip)
    chunked = backend.forward(torch.tensor(ids[5:]), 5 + torch.arange(2), cache, skip_layers=skip)
    torch.testing.assert_close(chunked, fresh(target, ids, skip)[5:])
    for impossible in ({6}, set(range(6))):
        with pytest.raises(ValueError):
            backend.forward(torch.tensor([1]), torch.tensor([0]), backend.new_cache(), skip_layers=frozenset(impossible))


def test_parse_layers():
    assert parse_layers("4-9,12", 30) == frozenset({4, 5, 6, 7, 8, 9, 12})
    assert parse_layers(" 3 , 5-5", 30) == frozenset({3, 5})
    assert parse_layers(7, 30) == frozenset({7})
    assert parse_layers([2, 3], 30) == frozenset({2, 3})
    for bad in ["0-3", "29", "4-", "a", "9-4", "", ",", True, 3.5, [1.0], "1-28,x"]:
        with pytest.raises(UserError):
            parse_layers(bad, 30)


def test_candidate_sets_keep_the_first_and_last_layers():
    for layers in (3, 4, 6, 18, 30, 32):
        candidates = candidate_sets(layers)
        assert candidates and len(set(candidates)) == len(candidates)
        for candidate in candidates:
            assert candidate and min(candidate) >= 1 and max(candidate) <= layers - 2
            assert candidate == frozenset(range(min(candidate), max(candidate) + 1))
    assert len(candidate_sets(30)) == 15


def test_expected_speedup_prefers_agreement_and_cheap_drafts():
    assert expected_speedup(0.9, 10, 30, 8) > expected_speedup(0.5, 10, 30, 8)
    assert expected_speedup(0.8, 15, 30, 8) > expected_speedup(0.8, 5, 30, 8)
    assert expected_speedup(1.0, 15, 30, 4) == pytest.approx(5 / 3)


def test_calibration_picks_the_best_candidate_and_counts_its_forwards(target):
    drafter = LayerSkipDrafter(target, None, StopRule())
    drafter.reset(PROMPTS_TINY[1], Sampler(SamplingConfig()))
    drafter.propose(PROMPTS_TINY[1], 4)
    candidates = candidate_sets(6)
    assert set(drafter.agreement) == set(candidates) and drafter.skip in candidates
    best = max(expected_speedup(a, len(s), 6, 4) for s, a in drafter.agreement.items())
    assert expected_speedup(drafter.agreement[drafter.skip], len(drafter.skip), 6, 4) == best
    calibration = 1 + len(candidates)
    assert calibration < drafter.forward_passes <= calibration + 4
    drafter.reset(PROMPTS_TINY[0], Sampler(SamplingConfig()))
    assert drafter.skip is None and drafter.forward_passes == 0  # calibrated again per request


def test_greedy_identity_on_a_tiny_model(target):
    options = [None, frozenset({2, 3}), frozenset({1}), frozenset({1, 2, 3, 4})]
    rules = [StopRule("confidence", 0.8), StopRule("entropy", 0.3), StopRule("none", 0.0)]
    accepted = 0
    for skip, rule, prompt in itertools.product(options, rules, PROMPTS_TINY):
        request = DecodeRequest(list(prompt), 30, num_draft=5)
        reference = Decoding(target, request, Decoder(), "ar").run()
        result = Decoding(target, request, Decoder(LayerSkipDrafter(target, skip, rule)), "layerskip").run()
        assert result.token_ids == reference.token_ids, (skip, rule, prompt)
        accepted += result.accepted_tokens
    assert accepted > 0


def test_the_draft_cache_holds_the_kept_layers_and_follows_the_context(target):
    """After a step the drafter's cache holds its own tokens in the kept layers only; the next step keeps the
    committed prefix and its q rows equal fresh skip-path forwards of the whole context."""
    skip = frozenset({2, 3})
    sampling = SamplingConfig(temperature=0.8, top_k=10, repetition_penalty=1.2, seed=4)
    drafter = LayerSkipDrafter(target, skip, StopRule("none", 0.0))
    sampler = Sampler(sampling)  # the request's chain: its repetition penalty follows the committed text
    sampler.reset(PROMPTS_TINY[0])
    drafter.reset(PROMPTS_TINY[0], sampler)
    context = list(PROMPTS_TINY[0])
    for keep in (1, 0, 3):
        proposal = drafter.propose(context, 4)
        lengths = [drafter.cache.get_seq_length(i) for i in range(6)]
        assert lengths == [0 if i in skip else len(drafter.cached) for i in range(6)]
        assert drafter.cached == context + proposal.tokens[:3]
        for i in range(4):
            ids = context + proposal.tokens[:i]
            expected = target_probs(fresh(target, ids, skip)[-1:], sampling, [ids])[0]
            torch.testing.assert_close(proposal.q[i], expected, atol=1e-5, rtol=1e-4)
        committed = proposal.tokens[:keep] + [(proposal.tokens[keep] + 1) % 64]
        context += committed
        sampler.accept(committed)
    assert drafter.forward_passes == 3 * 4


def test_bad_options_are_user_errors(target):
    get_method("layerskip", {"skip_layers": "0-2"})  # the form is right; the range needs the model
    with pytest.raises(UserError, match="like 4-9,12"):  # a malformed value fails before any model loads
        get_method("layerskip", {"skip_layers": "four"})
    with pytest.raises(UserError, match="threshold"):
        get_method("layerskip", {"threshold": "high"})
    with pytest.raises(UserError, match="first and last"):
        drafter_of("layerskip", target, {"skip_layers": "0-2"})
    with pytest.raises(UserError, match="threshold"):
        drafter_of("layerskip", target, {"threshold": "high"})
    with pytest.raises(UserError, match="does not take"):
        get_method("layerskip", {"draft_model": "smollm2-135m"})
    with pytest.raises(UserError, match="at least 3 layers"):
        drafter_of("layerskip", tiny_model(64, seed=1, layers=2), {})
    assert drafter_of("layerskip", target, {"skip_layers": "2-3"}).given == frozenset({2, 3})


@pytest.mark.integration
def test_embedded_greedy_identity(smollm2_f32):
    tokens = steps = passes = 0
    for prompt in PROMPTS[::2]:  # every other prompt: each kind (prose, code, maths, copying, lists) stays in
        reference = generate(prompt, smollm2_f32, method="ar", max_new_tokens=32)
        result = generate(prompt, smollm2_f32, method="layerskip", max_new_tokens=32)
        assert result.token_ids == reference.token_ids, prompt
        tokens += len(result.token_ids)
        steps += len(result.steps)
        passes += result.draft_forward_passes
    print(f"\nlayerskip on smollm2-135m: {tokens / steps:.2f} tokens per target forward, "
          f"{passes / steps:.2f} layer-skipped forwards per step (calibration included)")
