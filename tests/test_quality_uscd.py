"""USCD: the lame-prompt rule on HumanEval- and MBPP-style prompts, the gated contrast on hand-made
distributions, option checks, determinism, the gate-fire share, and greedy identity under drafters."""

import pytest
import torch
from tiny import tiny_model

from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.methods.registry import build_decoder
from decodekit.quality.uscd import LamePromptContrast, lame_prompt, uscd_scores
from decodekit.session import Session
from quality_helpers import ScatterDrafter, run

HUMANEVAL = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
'''
HUMANEVAL_LAME = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    """
'''
MBPP = ('''You are an expert Python programmer, and here is your task: Write a function to find the shared '''
        '''elements from the given two lists. Your code should pass these tests:

assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))
assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))
[BEGIN]
''')
MBPP_LAME = ('''You are an expert Python programmer, and here is your task: Write a function to find the '''
             '''shared elements from the given two lists.

[BEGIN]
''')


def test_lame_prompt_of_a_humaneval_prompt():
    assert lame_prompt(HUMANEVAL) == HUMANEVAL_LAME
    first = "    >>> has_close_elements([1.0, 2.0"
    with_header = HUMANEVAL.replace(first, "    For example:\n" + first)
    assert lame_prompt(with_header) == HUMANEVAL_LAME


def test_lame_prompt_of_an_mbpp_prompt():
    assert lame_prompt(MBPP) == MBPP_LAME
    own_line = MBPP.replace(" Your code should pass these tests:", "\nYour code should pass these tests:")
    assert lame_prompt(own_line) == MBPP_LAME
    assert lame_prompt("def f(x):\n    return x\n") == "def f(x):\n    return x\n"  # nothing to remove


def test_gated_contrast_on_hand_made_distributions():
    confident = torch.tensor([[0.97, 0.01, 0.01, 0.01]]).log()
    unsure = torch.tensor([[0.4, 0.35, 0.2, 0.05]]).log()
    lame = torch.tensor([[0.5, 0.1, 0.2, 0.2]]).log()
    scores, fired = uscd_scores(torch.cat([confident, unsure]), torch.cat([lame, lame]), gate=0.003,
                                filter_=0.666667, weight=0.7)
    # std x sqrt(4 / 32016): 0.485 x 0.0112 = 0.0054 > 0.003, confident; 0.16 x 0.0112 = 0.0018, uncertain
    assert fired.tolist() == [False, True]
    assert scores[0].tolist() == pytest.approx(confident[0].log_softmax(-1).tolist())
    # 0.05 < mean(p) * 0.666667 = 0.1667: dropped; p - 0.7 p_lame = [0.05, 0.28, 0.06]
    assert scores[1, 3] == float("-inf")
    assert scores[1, :3].exp().tolist() == pytest.approx([0.05, 0.28, 0.06], abs=1e-6)
    assert int(scores[1].argmax()) == 1  # the token the examples-free prompt does not predict


@pytest.mark.parametrize("options", [{"gate": 0}, {"gate": "x"}, {"filter": -1}, {"weight": 2},
                                     {"drafter": "layerskip"}, {"amateur_model": "x"}])
def test_bad_options_fail_before_loading(options):
    with pytest.raises(UserError):
        get_method("uscd", options)


def _drop_two(text: str) -> str:
    """The tiny tokenizer's prompts have no examples: a lame rule of the test's own (drop the first two words)."""
    return " ".join(text.split()[2:])


def _uscd(model, prompt, drafter=None, gate=0.002):
    session = Session()
    decoder = build_decoder("uscd", model, session, {"gate": gate})
    decoder.make_processors = lambda: [LamePromptContrast(model, gate, lame=_drop_two)]
    if drafter is not None:
        decoder.drafter = drafter if not isinstance(drafter, str) else build_decoder(drafter, model, session).drafter
    from decodekit.core import DecodeRequest
    from decodekit.speculative.decoding import Decoding

    return Decoding(model, DecodeRequest(list(prompt), 40), decoder, "uscd").run()


PROMPTS = [[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]


@pytest.mark.parametrize("backend", ["transformers", "lean"])
def test_greedy_identity_under_drafters_and_gate_share(backend):
    model = tiny_model(64, seed=3, layers=2, backend=backend)
    differs = 0
    for prompt in PROMPTS:
        alone = _uscd(model, prompt)
        assert _uscd(model, prompt).token_ids == alone.token_ids  # deterministic
        assert 0 < alone.quality["uscd_gate_share"] < 1 and alone.quality["uscd_tokens"] == 40
        assert alone.quality["uscd_batched_forwards"] == 40  # the lame tree rode in the target's forward
        differs += alone.token_ids != run(model, "ar", prompt, 40).token_ids
        for drafter in ("pld", ScatterDrafter(64)):
            drafted = _uscd(model, prompt, drafter)
            assert drafted.token_ids == alone.token_ids
            assert drafted.quality["uscd_gate_share"] == pytest.approx(alone.quality["uscd_gate_share"])
    assert differs > 0


def test_default_method_runs_and_reports_its_gate(tmp_path):
    model = tiny_model(64, seed=3, layers=2)
    result = run(model, "uscd", PROMPTS[0], 16)
    assert "uscd_gate_share" in result.quality and "uscd_gate_share" in result.to_json()["quality"]
