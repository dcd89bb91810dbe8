"""AdaDec: the rerank score, the threshold fit on hand-made signals and its calibration procedure, option
checks, the gate (never / always), determinism and the gate-fire share."""

import json
import math

import pytest
from tiny import tiny_model

from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.quality.adadec import calibrate_threshold, fit_threshold, length_normalised, position_signals
from quality_helpers import run

PROMPTS = [[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]


def test_length_normalised_score_prefers_a_confident_continuation():
    short_sure = length_normalised(math.log(0.4), [])  # ended at once
    long_sure = length_normalised(math.log(0.3), [math.log(0.9)] * 4)
    long_unsure = length_normalised(math.log(0.5), [math.log(0.2)] * 4)
    assert long_sure == pytest.approx((math.log(0.3) + 4 * math.log(0.9)) / 5)
    assert max([short_sure, long_sure, long_unsure]) == long_sure


def test_threshold_fit_separates_right_from_wrong():
    entropies = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.1, 1.2, 1.3, 1.6]
    wrong = [False] * 6 + [True] * 4
    threshold = fit_threshold(entropies, wrong)
    assert 0.6 < threshold < 1.1
    with pytest.raises(UserError):
        fit_threshold([0.1, 0.2], [False, False])
    with pytest.raises(UserError):
        fit_threshold([0.1, 0.2, 1.0, 1.1], [True, True, False, False])  # wrong where confident


def test_calibration_procedure_on_development_pairs():
    model = tiny_model(64, seed=6, layers=2)
    other = tiny_model(64, seed=7, layers=2)  # references from another model: greedy is wrong at some positions
    examples = [(p, run(other, "ar", p, 24).token_ids) for p in PROMPTS]
    entropies, wrong = position_signals(model, *examples[0])
    assert len(entropies) == len(wrong) == 24 and any(wrong)
    own = [(p, run(model, "ar", p, 24).token_ids) for p in PROMPTS]  # greedy's own text: never wrong
    assert not any(position_signals(model, *own[0])[1])
    with pytest.raises(UserError, match="right and wrong"):
        calibrate_threshold(model, own)
    try:
        threshold = calibrate_threshold(model, examples)
    except UserError:  # a random model need not be more often wrong at higher entropy
        return
    assert math.isfinite(threshold)


def test_threshold_required_where_none_was_measured():
    with pytest.raises(UserError, match="needs the option threshold"):
        run(tiny_model(64, seed=6, layers=1), "adadec", [1, 2, 3], 2)


def test_mbpp_examples(tmp_path):
    from decodekit.quality.adadec import mbpp_examples

    row = {"text": "Add.", "code": "def add(a, b):\r\n  return a + b", "task_id": 511,
           "test_list": ["assert add(1, 2) == 3"]}
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "task_id": 3}) + "\n")
    seen = []

    def tokenizer(text, add_special_tokens=True):
        seen.append(text)
        return {"input_ids": [len(text)]}

    assert mbpp_examples(str(path), tokenizer) == [([len(seen[0])], [len(seen[1])])]
    assert seen[0].endswith("assert add(1, 2) == 3\n[BEGIN]\n") and seen[1] == "def add(a, b):\n  return a + b"


@pytest.mark.parametrize("options", [{"threshold": -1}, {"threshold": "x"}, {"threshold": 1, "beam": 1},
                                     {"threshold": 1, "lookahead": 0}, {"threshold": 1, "drafter": "pld"}])
def test_bad_options_fail_before_loading(options):
    with pytest.raises(UserError):
        get_method("adadec", options)


def test_gate_never_and_always():
    model = tiny_model(64, seed=6, layers=2)
    for prompt in PROMPTS:
        ar = run(model, "ar", prompt, 24).token_ids
        never = run(model, "adadec", prompt, 24, threshold=1e9)
        assert never.token_ids == ar and never.quality["adadec_gate_share"] == 0.0
        always = run(model, "adadec", prompt, 24, threshold=0.0)
        assert always.quality["adadec_gate_share"] == 1.0
        assert run(model, "adadec", prompt, 24, threshold=0.0).token_ids == always.token_ids  # deterministic
        assert always.token_ids != ar or always.finish_reason == "eos"


def test_gate_share_between(tmp_path):
    model = tiny_model(64, seed=6, layers=2, backend="lean")
    ar = run(model, "ar", PROMPTS[1], 32)
    entropies = sorted(e for step in ar.steps for e in step.entropy)
    middle = entropies[len(entropies) // 2]
    result = run(model, "adadec", PROMPTS[1], 32, threshold=middle)
    assert 0.0 < result.quality["adadec_gate_share"] < 1.0
    assert result.quality["adadec_rollout_forwards"] > 0
