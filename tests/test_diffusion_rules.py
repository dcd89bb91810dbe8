"""Unmasking rules, schedules, stop controllers and the float64 proposal (pure functions, no model)."""

import math

import pytest
import torch

from decodekit.diffusion import unmasking as U
from decodekit.diffusion.noise import propose
from decodekit.diffusion.schedules import dream_count, llada_counts, margin_threshold, prophet_threshold
from decodekit.diffusion.stopping import MarginExit, eos_fill
from decodekit.errors import UserError


def proposal_from_probs(probs):
    return propose(torch.log(torch.tensor(probs, dtype=torch.float64)))


def progress(batch, steps=4, step=0, masked=None):
    return U.Progress(torch.full((batch,), step), steps, masked if masked is not None else torch.full((batch,), 8))


def conf_proposal(conf):
    """A proposal whose top-1 probabilities are ``conf`` [B, L] (token 0; the rest spread over 99 tokens)."""
    c = torch.tensor(conf, dtype=torch.float64).unsqueeze(-1)
    return propose(torch.log(torch.cat([c, ((1 - c) / 99).expand(*c.shape[:-1], 99)], -1)))


def test_propose_float64_confidence_at_sampled_token():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]]], dtype=torch.float32)
    p = propose(logits)
    assert p.confidence.dtype == torch.float64
    assert p.tokens.tolist() == [[0, 2]]
    expected = torch.softmax(logits.double(), -1)[0, 0, 0]
    assert p.confidence[0, 0].item() == pytest.approx(expected.item(), abs=1e-12)
    # sampled (T = 1): the confidence is the clean probability of whatever token was drawn
    q = propose(logits.repeat(1, 200, 1), temperature=1.0, generator=torch.Generator().manual_seed(0))
    clean = torch.softmax(logits.double(), -1).repeat(1, 200, 1)
    assert torch.allclose(q.confidence, clean.gather(-1, q.tokens.unsqueeze(-1)).squeeze(-1))
    assert q.logit_margin[0, 1].item() == pytest.approx(5.0)


def test_gumbel_sampling_matches_softmax():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).expand(1, 30000, 3)
    tokens = propose(logits, temperature=1.0, generator=torch.Generator().manual_seed(1)).tokens
    freq = torch.bincount(tokens.flatten(), minlength=3).double() / tokens.numel()
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), atol=0.015)


def test_mask_token_is_never_proposed():
    logits = torch.tensor([[[9.0, 1.0, 0.0]]])
    assert propose(logits, suppress=(0,)).tokens.item() == 1


def test_threshold_commits_all_above_tau_and_at_least_one():
    p = conf_proposal([[0.95, 0.5, 0.92, 0.6], [0.55, 0.6, 0.7, 0.65]])
    cand = torch.ones(2, 4, dtype=torch.bool)
    out = U.threshold(p, cand, progress(2), tau=0.9)
    assert out.tolist() == [[True, False, True, False], [False, False, True, False]]
    per_row = U.threshold(p, cand, progress(2), tau=torch.tensor([0.99, 0.5]))
    assert per_row.tolist() == [[True, False, False, False], [True, True, True, True]]


def test_rules_respect_candidates_and_progress():
    p = conf_proposal([[0.99, 0.99, 0.2, 0.99]])
    cand = torch.tensor([[False, True, True, False]])
    for rule in (U.threshold, U.factor, U.entropy_bound, U.local_leap, U.low_confidence, U.maskgit_plus,
                 U.topk_margin, U.entropy):
        out = rule(p, cand, progress(1, masked=torch.tensor([2])))
        assert out.sum() >= 1 and not (out & ~cand).any(), rule.__name__
    empty = torch.zeros(1, 4, dtype=torch.bool)
    assert not U.threshold(p, empty, progress(1)).any()


def test_factor_rule_longest_prefix_without_off_by_one():
    # sorted 0.9, 0.8, 0.3: (n+1)(1-c): 0.2, 0.6, 2.8 -> f = 1 keeps two; the failing last rank is NOT kept
    p = conf_proposal([[0.3, 0.9, 0.8]])
    cand = torch.ones(1, 3, dtype=torch.bool)
    assert U.factor(p, cand, progress(1), f=1.0).tolist() == [[False, True, True]]
    assert U.factor(p, cand, progress(1), f=0.1).tolist() == [[False, True, False]]  # rank 1 always
    assert U.factor(p, cand, progress(1), f=3.0).all()


def test_entropy_bound():
    # three positions of entropy H = 0.325 nats: sum - max is 0 for k = 1, H for k = 2, 2H for k = 3
    probs = torch.tensor([[[0.9, 0.1]] * 3], dtype=torch.float64)
    p = propose(torch.log(probs))
    h = p.entropy[0, 0].item()
    cand = torch.ones(1, 3, dtype=torch.bool)
    assert U.entropy_bound(p, cand, progress(1), gamma=1.5 * h).tolist() == [[True, True, False]]
    assert U.entropy_bound(p, cand, progress(1), gamma=2.5 * h).all()
    assert U.entropy_bound(p, cand, progress(1), gamma=0.5 * h).sum() == 1
    # the lowest-entropy positions go first
    mixed = propose(torch.log(torch.tensor([[[0.5, 0.5], [0.999, 0.001], [0.9, 0.1]]], dtype=torch.float64)))
    assert U.entropy_bound(mixed, cand, progress(1), gamma=0.01).tolist() == [[False, True, True]]


def test_local_leap_relaxes_near_anchors_only():
    p = conf_proposal([[0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]])
    cand = torch.ones(1, 7, dtype=torch.bool)
    out = U.local_leap(p, cand, progress(1), tau=0.9, radius=2, relaxed=0.75)
    assert out.tolist() == [[True, True, True, False, False, False, False]]


def test_fixed_schedules():
    assert llada_counts(10, 4) == [3, 3, 2, 2]
    assert sum(llada_counts(7, 7)) == 7
    assert dream_count(10, 3, 4) == 10
    p = conf_proposal([[0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6]])
    cand = torch.ones(1, 8, dtype=torch.bool)
    out = U.low_confidence(p, cand, progress(1, steps=4, step=0, masked=torch.tensor([8])))
    assert out.tolist() == [[False, True, False, False, False, False, True, False]]
    last = U.low_confidence(p, cand, progress(1, steps=4, step=3, masked=torch.tensor([8])))
    assert last.all()
    g = torch.Generator().manual_seed(0)
    assert U.random_order(p, cand, progress(1, steps=4, masked=torch.tensor([8])), generator=g).sum() == 2


def test_margin_schedules():
    for kind in ("linear", "cosine", "exp"):
        assert margin_threshold(kind, 0.0) == pytest.approx(7.5)
        values = [margin_threshold(kind, p / 10) for p in range(11)]
        assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))
    assert margin_threshold("linear", 1.0) == pytest.approx(2.5)
    assert margin_threshold("exp", 1.0, k=8) == pytest.approx(2.5 + 5 * math.exp(-8))
    assert (prophet_threshold(0.1), prophet_threshold(0.5), prophet_threshold(0.9)) == (7.5, 5.0, 2.5)
    with pytest.raises(UserError):
        margin_threshold("square", 0.5)
    with pytest.raises(UserError):
        MarginExit("sched", high=1.0, low=2.0)


def test_margin_exit_reads_masked_span():
    logits = torch.tensor([[[10.0, 0.0], [10.0, 0.0], [0.5, 0.0]]])
    p = propose(logits)
    span = torch.tensor([[True, True, False]])
    rule = MarginExit("sched", "linear", 7.5, 2.5)
    assert rule.exits(p, span, torch.tensor([0.0])).tolist() == [True]
    assert rule.exits(p, torch.tensor([[True, True, True]]), torch.tensor([0.0])).tolist() == [False]


def test_eos_fill_after_complete_block():
    eos, m = 9, 0
    gen = torch.tensor([[1, 9, 2, 3, m, m], [1, m, 9, 2, m, m]])
    masked = gen == m
    fill = eos_fill(gen, masked, 2, (eos,))
    assert fill.tolist() == [[False] * 4 + [True, True], [False] * 6]
