"""Greedy identity in bfloat16 and q4: where a lossless method's output parts from `ar`'s, the two runs'
forwards of that position differ by rounding only.

In bfloat16 (and in q4, whose activations are bfloat16) a forward over several new tokens can round differently
from one over a single token (the products' blocking, on CPUs whose kernels depend on the number of rows), so a
method that verifies several tokens per forward may pick the other of two near-equal top tokens. That is the only
acceptable cause of a difference, and it is checked as a property of the precision, not of one machine's
margins: at the first differing position, the logits that the method's own verification forward gave that
position (B) and those of `ar`'s one-token forward (A) must (1) each pick their run's token (the verifier
follows its forward), and (2) differ by no more than ROUNDING_ULPS units of bfloat16 resolution at the
logits' scale, once each is centred (a constant added to every logit leaves the distribution as it is):
|(A - mean A) - (B - mean B)| <= ROUNDING_ULPS * 2^-8 * max |A|. A wrong mask, position or cache edit moves
logits by their own order of magnitude and fails (2). (Measured on an AMD EPYC, Zen 5: at most 3.8 units in
bfloat16 and 6.7 in q4 over these prompts and methods; the bound leaves room for other kernels.) In float32 every method is identical to `ar` (the float32 identity
tests of each method).

Where this CPU's bfloat16 (and, for q4, int4) products give each row the same bits for any number of rows
(models/precision_probe.py: on AMX), the lean backend attends row by row in verification (models/row_attention.py)
and there is no rounding apart: every method must then be identical to `ar` outright.
"""

import pytest
import torch

from decodekit.api import generate
from decodekit.session import Session
from identity import verification_exact_here
from prompts import PROMPTS

pytestmark = pytest.mark.integration

BFLOAT16_EPSILON = 2.0**-8  # bfloat16 keeps 8 significant bits
ROUNDING_ULPS = 16  # a few roundings of each layer's outputs, carried through 30 layers; far below a logic error
METHODS = ["pld", "sam", "recycle", "lookahead", "hybrid", "auto"]
PROMPT_COUNT = 6
TOKENS = 32


class Recorded:
    """Runs a generation with the model's forwards recorded (the logits of every call, in order)."""

    def __init__(self, model, monkeypatch):
        self.model, self.monkeypatch, self.calls = model, monkeypatch, []

    def generate(self, prompt, method, session):
        backend = self.model.backend
        original = type(backend).forward
        self.calls = []

        def forward(this, *args, **kwargs):
            logits = original(this, *args, **kwargs)
            self.calls.append(logits)
            return logits

        with self.monkeypatch.context() as patch:
            patch.setattr(type(backend), "forward", forward)
            return generate(prompt, self.model, method=method, max_new_tokens=TOKENS, session=session)


def row_logits(result, calls, position):
    """The logits row from which `result` committed its token at `position` (calls[0] is the prefill)."""
    committed = 0
    for index, step in enumerate(result.steps):
        if committed + len(step.committed) > position:
            j = position - committed
            row = 0 if j == 0 else step.accepted[j - 1] + 1
            return calls[1 + index][row]
        committed += len(step.committed)
    raise AssertionError(f"position {position} was never committed")


def first_difference(reference, tokens):
    for position, (a, b) in enumerate(zip(reference, tokens)):
        if a != b:
            return position
    return None


@pytest.fixture(scope="module", params=["smollm2_bf16", "smollm2_q4"])
def model(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("method", METHODS)
def test_differences_are_rounding_only(model, method, monkeypatch):
    recorder, session = Recorded(model, monkeypatch), Session()
    generate(PROMPTS[0], model, method=method, max_new_tokens=2, session=session)  # cost curve timed unrecorded
    for prompt in PROMPTS[:PROMPT_COUNT]:
        reference = recorder.generate(prompt, "ar", session)
        reference_calls = recorder.calls
        result = recorder.generate(prompt, method, session)
        position = first_difference(reference.token_ids, result.token_ids)
        if verification_exact_here(model.precision):  # no rounding apart: identical, token for token
            assert position is None, (method, prompt, position)
        if position is None:
            assert len(result.token_ids) == len(reference.token_ids)
            continue
        a = row_logits(reference, reference_calls, position)
        b = row_logits(result, recorder.calls, position)
        assert int(a.argmax()) == reference.token_ids[position], (method, prompt, "ar does not follow its forward")
        assert int(b.argmax()) == result.token_ids[position], (method, prompt, "verification does not follow its forward")
        bound = ROUNDING_ULPS * BFLOAT16_EPSILON * float(a.abs().max())
        apart = float(((a - a.mean()) - (b - b.mean())).abs().max())
        assert apart <= bound, (method, prompt, position, apart, bound)


def test_a_wrong_forward_fails_the_rounding_bound(smollm2_bf16):
    """The bound is tight enough to catch a logic error: logits of the next position differ far more."""
    ids = smollm2_bf16.encode(PROMPTS[0])
    backend = smollm2_bf16.backend
    cache = backend.new_cache()
    logits = backend.forward(torch.tensor(ids), torch.arange(len(ids)), cache)
    right, shifted = logits[-1], logits[-2]
    apart = float(((right - right.mean()) - (shifted - shifted.mean())).abs().max())
    assert apart > ROUNDING_ULPS * BFLOAT16_EPSILON * float(right.abs().max())
