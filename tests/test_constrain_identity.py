"""Greedy decoding under a grammar is the same token for token whatever the method: every drafter's nodes are
pruned by the grammar, every verification row is masked by its own path's state, and the grammar's forced and
fast-forward tokens only enter as draft nodes that verification checks."""

import re

import pytest
import torch

from constrain_tiny import char_model, ids
from decodekit.api import generate
from decodekit.constrain import Grammar
from decodekit.core import DecodeRequest
from decodekit.drafting.draft_model import ChainDrafter, StopRule
from decodekit.session import Session
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding

# items "ab" + 1-3 of c-f, or two digits + "x"; 5 to 8 of them, then "end": the grammar forces "b" after
# "a", "x" after two digits and "nd" after "e" where a new item starts, and leaves the rest to the model
PATTERN = r"(ab[c-f]{1,3} |[0-9]{2}x ){5,8}end"
PROMPT = "abcd 12x abef 34x abcd 12x abce 56x "
OPTIONS = {"recycle": {"tree_size": 8}, "ngram": {"tree_size": 8}, "hybrid": {"tree_size": 8}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return char_model(64, seed=3)


def test_constrained_greedy_output_is_the_same_for_every_method(model):
    grammar = Grammar.regex(PATTERN)
    session = Session()
    reference = generate(ids(PROMPT), model, method="ar", max_new_tokens=60, processors=[grammar], session=session)
    assert reference.finish_reason == "eos" and reference.complete is True
    text = reference.text
    assert re.fullmatch(PATTERN, text), text
    for method in ["pld", "sam", "recycle", "ngram", "hybrid", "auto"]:
        result = generate(ids(PROMPT), model, method=method, max_new_tokens=60, processors=[grammar],
                          session=session, **OPTIONS.get(method, {}))
        assert result.token_ids == reference.token_ids, method
    assert reference.stats["forced_tokens"] > 0
    assert reference.forward_passes < len(reference.token_ids) + 1  # forced tokens cost no forward of their own


def test_constrained_greedy_with_a_draft_model_is_the_same(model):
    grammar = Grammar.regex(PATTERN)
    reference = generate(ids(PROMPT), model, method="ar", max_new_tokens=60, processors=[grammar])
    other = char_model(64, seed=4)  # a different model drafting, so that some drafts are rejected
    drafter = ChainDrafter(other, model.vocab_size, StopRule.parse("none"))
    request = DecodeRequest(ids(PROMPT), 60, processors=[grammar], num_draft=4)
    result = Decoding(model, request, Decoder(drafter=drafter), "draft").run()
    assert result.token_ids == reference.token_ids
    assert result.draft_forward_passes > 0


def test_the_unconstrained_output_differs(model):
    """The grammar is not vacuous on this model: without it, greedy decoding leaves the pattern."""
    plain = generate(ids(PROMPT), model, method="ar", max_new_tokens=60)
    assert not re.fullmatch(PATTERN, plain.text)


@pytest.mark.integration
def test_smollm2_json_schema_greedy_is_the_same_for_ar_pld_auto(smollm2_f32):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    grammar = Grammar.json_schema(schema)
    prompt = "Describe the user Alice, aged 31, as a JSON object with her name and age."
    session = Session()
    results = {method: generate(prompt, smollm2_f32, method=method, max_new_tokens=64, processors=[grammar],
                                session=session) for method in ["ar", "pld", "auto"]}
    reference = results["ar"]
    for method, result in results.items():
        assert result.token_ids == reference.token_ids, method
    if reference.finish_reason == "eos":
        assert reference.complete is True and grammar.valid(reference.text)
    else:
        assert reference.complete is False
