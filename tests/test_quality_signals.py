"""Per-token signals (entropy, varentropy, margin) and the quality counters in the result; a method's own step
served by `step_together` next to the speculative step."""

import math

import pytest
import torch
from tiny import tiny_model

from decodekit.core import DecodeRequest
from decodekit.methods.registry import build_decoder
from decodekit.sampling import entropy_and_margin, uncertainty, varentropy
from decodekit.session import Session
from decodekit.speculative.step import prefill, result, step_together
from quality_helpers import run


def test_varentropy_on_hand_made_distributions():
    uniform = torch.zeros(1, 8)
    two = torch.tensor([[0.9, 0.1]]).log()
    assert varentropy(uniform) == pytest.approx([0.0], abs=1e-6)  # every token equally surprising
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    expected = 0.9 * (math.log(0.9) + h) ** 2 + 0.1 * (math.log(0.1) + h) ** 2
    assert varentropy(two) == pytest.approx([expected], rel=1e-5)
    logits = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    entropy, spread, margin = uncertainty(logits)
    assert entropy == pytest.approx(entropy_and_margin(logits)[0], rel=1e-5)
    assert margin == pytest.approx(entropy_and_margin(logits)[1], rel=1e-5)
    assert spread == pytest.approx(varentropy(logits), rel=1e-5)


def test_steps_carry_varentropy_and_results_their_counters():
    model = tiny_model(64, seed=6, layers=2)
    plain = run(model, "ar", [3, 1, 4, 1, 5], 8)
    assert all(len(s.varentropy) == len(s.committed) for s in plain.steps) and plain.quality == {}
    assert "quality" not in plain.to_json() and "varentropy" in plain.to_json(trace=True)["steps"][0]
    gated = run(model, "adadec", [3, 1, 4, 1, 5], 8, threshold=0.0)
    assert gated.to_json()["quality"]["adadec_gate_share"] == 1.0
    assert all(len(s.varentropy) == 1 for s in gated.steps)
    from decodekit.bench.outcome import Outcome

    assert Outcome.from_result(gated).quality == gated.quality  # what a bench run can read


def test_step_together_runs_a_methods_own_step_alone():
    model = tiny_model(64, seed=6, layers=2, backend="lean")
    session = Session()
    prompts = [[3, 1, 4, 1, 5], [2, 7, 1, 8, 2, 8]]
    caches = model.backend.new_caches(2)
    decoders = [build_decoder("ar", model, session), build_decoder("adadec", model, session, {"threshold": 0.0})]
    states = [prefill(model, DecodeRequest(p, 8), d, name, cache)
              for p, d, name, cache in zip(prompts, decoders, ["ar", "adadec"], caches)]
    while not all(s.finished for s in states):
        step_together([s for s in states if not s.finished])
    together = [result(s).token_ids for s in states]
    assert together[0] == run(model, "ar", prompts[0], 8).token_ids
    assert together[1] == run(model, "adadec", prompts[1], 8, threshold=0.0).token_ids
