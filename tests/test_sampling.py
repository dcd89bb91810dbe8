"""Each warper against a direct reference computation (numpy, one row at a time) and transformers."""

import math

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    EpsilonLogitsWarper, EtaLogitsWarper, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper,
)

from decodekit.errors import UserError
from building import target_probs
from decodekit.sampling import SamplingConfig, entropy_and_margin, warp
from decodekit.sampling.processors import apply_repetition_penalty

V = 50


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def kept(row):
    return set(np.flatnonzero(np.isfinite(row)))


def ref_top_k(x, k):
    return set(np.argsort(-x, kind="stable")[:k])


def ref_top_p(x, p):
    probs = softmax(x)
    keep, mass = set(), 0.0
    for i in np.argsort(-probs, kind="stable"):
        keep.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return keep


def ref_min_p(x, m):
    probs = softmax(x)
    return set(np.flatnonzero(probs >= m * probs.max()))


def ref_typical(x, mass):
    probs = softmax(x)
    entropy = -(probs * np.log(probs)).sum()
    order = np.argsort(np.abs(-np.log(probs) - entropy), kind="stable")
    keep, total = set(), 0.0
    for i in order:
        keep.add(i)
        total += probs[i]
        if total >= mass:
            break
    return keep


def ref_epsilon(x, eps):
    probs = softmax(x)
    return set(np.flatnonzero(probs >= eps)) | {int(probs.argmax())}


def ref_eta(x, eta):
    probs = softmax(x)
    entropy = -(probs * np.log(probs)).sum()
    threshold = min(eta, math.sqrt(eta) * math.exp(-entropy))
    return set(np.flatnonzero(probs >= threshold)) | {int(probs.argmax())}


CASES = [
    ("top_k", 5, ref_top_k, lambda v: TopKLogitsWarper(v)),
    ("top_p", 0.8, ref_top_p, lambda v: TopPLogitsWarper(v)),
    ("min_p", 0.1, ref_min_p, lambda v: MinPLogitsWarper(v)),
    ("typical_p", 0.7, ref_typical, lambda v: TypicalLogitsWarper(v)),
    ("epsilon_cutoff", 0.02, ref_epsilon, lambda v: EpsilonLogitsWarper(v)),
    ("eta_cutoff", 0.05, ref_eta, lambda v: EtaLogitsWarper(v, device="cpu")),
]


@pytest.mark.parametrize("field,value,reference,hf", CASES, ids=[c[0] for c in CASES])
def test_each_warper_matches_reference_and_transformers(field, value, reference, hf):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(8, V, generator=generator) * 2.5
    config = SamplingConfig(temperature=0.7, **{field: value})
    ours = warp(logits, config)
    scaled = logits / 0.7
    theirs = hf(value)(torch.zeros(8, 1, dtype=torch.long), scaled.clone())
    for row in range(8):
        assert kept(ours[row].numpy()) == reference(scaled[row].double().numpy(), value)
        assert kept(ours[row].numpy()) == kept(theirs[row].numpy())
    probs = target_probs(logits, config)
    assert torch.allclose(probs.sum(-1), torch.ones(8), atol=1e-6)


def test_temperature_and_combined_filters():
    logits = torch.randn(4, V, generator=torch.Generator().manual_seed(2))
    config = SamplingConfig(temperature=1.3, top_k=10, top_p=0.9)
    probs = target_probs(logits, config)
    for row in range(4):
        x = logits[row].double().numpy() / 1.3
        keep = ref_top_k(x, 10)
        masked = np.where([i in keep for i in range(V)], x, -np.inf)
        keep = ref_top_p(masked, 0.9)
        expected = np.where([i in keep for i in range(V)], softmax(np.where(np.isfinite(masked), masked, -1e30)), 0)
        expected /= expected.sum()
        assert np.allclose(probs[row].numpy(), expected, atol=1e-6)


def test_repetition_penalty_matches_reference_and_transformers():
    logits = torch.randn(2, V, generator=torch.Generator().manual_seed(3))
    histories = [[1, 4, 4, 9], [2]]
    ours = apply_repetition_penalty(logits, 1.3, histories)
    for row, history in enumerate(histories):
        expected = logits[row].clone()
        for token in set(history):
            value = expected[token]
            expected[token] = value * 1.3 if value < 0 else value / 1.3
        assert torch.equal(ours[row], expected)
        hf = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([history]), logits[row:row + 1].clone())
        assert torch.allclose(ours[row], hf[0])


def test_signals():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [1.0, 1e-9, 1e-9]]))
    entropy, margin = entropy_and_margin(logits)
    assert entropy[0] == pytest.approx(-(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)), abs=1e-5)
    assert margin[0] == pytest.approx(0.2, abs=1e-6)
    assert entropy[1] == pytest.approx(0.0, abs=1e-6) and margin[1] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_p=1.5), dict(top_p=0), dict(top_k=-2),
                                    dict(min_p=2), dict(typical_p=0), dict(repetition_penalty=0),
                                    dict(temperature=float("nan"))])
def test_invalid_parameters_are_user_errors(kwargs):
    with pytest.raises(UserError):
        SamplingConfig(**kwargs)
