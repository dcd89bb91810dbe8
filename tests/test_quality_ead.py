"""EAD: the switching rule on hand-made entropies, option checks, the extremes (never / at once), and the
cached loop against a from-scratch reference (both models' caches kept in step, the idle one catching up)."""

import math

import pytest
import torch
from tiny import tiny_model

from decodekit.api import generate
from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.quality.ead import entropy_bits, next_model
from quality_helpers import run

PROMPTS = [[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]


@pytest.fixture(scope="module")
def pair():
    return tiny_model(64, seed=0, layers=2), tiny_model(64, seed=8, layers=1)


def test_switching_rule():
    assert next_model("small", 3.0, 2, threshold=1.0, dwell=4) == "small"  # dwell not reached
    assert next_model("small", 3.0, 4, threshold=1.0, dwell=4) == "large"
    assert next_model("large", 0.5, 4, threshold=1.0, dwell=4) == "small"
    assert next_model("large", 1.5, 9, threshold=1.0, dwell=4) == "large"
    assert entropy_bits(torch.zeros(8)) == pytest.approx(3.0)  # uniform over 8: 3 bits
    assert entropy_bits(torch.tensor([0.0, 0.0]).log_softmax(-1)) == pytest.approx(1.0)


@pytest.mark.parametrize("options", [{"window": 0}, {"dwell": 0}, {"threshold": -1}, {"threshold": "x"},
                                     {"small_model": ""}, {"small_model": "no-such-model"}, {"drafter": "pld"}])
def test_bad_options_fail_before_loading(options):
    with pytest.raises(UserError):
        get_method("ead", options)


def test_small_model_of_another_tokenizer_is_refused(pair):
    large, _ = pair
    with pytest.raises(UserError, match="another tokenizer"):
        generate([1, 2, 3], large, method="ead", small_model=tiny_model(40, seed=1, layers=1), max_new_tokens=2)


def test_extremes(pair):
    large, small = pair
    for prompt in PROMPTS:
        never = run(large, "ead", prompt, 24, small_model=small, threshold=1e9)
        assert never.token_ids == run(small, "ar", prompt, 24).token_ids
        assert never.quality["ead_small_share"] == 1.0 and never.quality["ead_switches"] == 0
        at_once = run(large, "ead", prompt, 24, small_model=small, threshold=0.0, dwell=1)
        first = at_once.token_ids[0]
        assert first == run(small, "ar", prompt, 1).token_ids[0]
        assert at_once.token_ids[1:] == run(large, "ar", prompt + [first], 23).token_ids
        assert at_once.quality["ead_large_share"] == pytest.approx(23 / 24)


def _from_scratch(large, small, prompt, n, window, threshold, dwell):
    """EAD without caches: every token's logits from a full forward of the active model over the text."""
    from collections import deque

    text, active, produced, entropies, out = list(prompt), "small", 0, deque(maxlen=window), []
    for _ in range(n):
        model = small if active == "small" else large
        logits = model.backend.forward(torch.tensor(text), torch.arange(len(text)), model.backend.new_cache(),
                                       last=1)[0]
        token = int(logits.argmax())
        log_probs = logits.log_softmax(-1)
        entropies.append(float(-(log_probs.exp() * log_probs).sum()) / math.log(2))
        out.append(token)
        text.append(token)
        if token == 0:
            break
        produced += 1
        chosen = next_model(active, sum(entropies) / len(entropies), produced, threshold, dwell)
        if chosen != active:
            active, produced = chosen, 0
    return out


@pytest.mark.parametrize("backend", ["transformers", "lean"])
def test_cached_loop_equals_the_from_scratch_reference(backend):
    large, small = tiny_model(64, seed=0, layers=2, backend=backend), tiny_model(64, seed=8, layers=1,
                                                                                 backend=backend)
    ar = run(large, "ar", PROMPTS[1], 40)
    threshold = sorted(e / math.log(2) for s in ar.steps for e in s.entropy)[20]  # the median, in bits
    switched = 0
    for prompt in PROMPTS:
        result = run(large, "ead", prompt, 40, small_model=small, threshold=threshold, window=3, dwell=2)
        assert result.token_ids == _from_scratch(large, small, prompt, 40, 3, threshold, 2)
        assert run(large, "ead", prompt, 40, small_model=small, threshold=threshold, window=3,
                   dwell=2).token_ids == result.token_ids  # deterministic
        q = result.quality
        assert q["ead_large_share"] + q["ead_small_share"] == pytest.approx(1.0)
        switched += q["ead_switches"] >= 2  # each model took over at least once after the start
    assert switched > 0
