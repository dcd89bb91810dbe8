"""Grammar constraints: checked before a model loads, masks per draft path that leave the committed state
alone, end-of-sequence only where the grammar accepts, forced tokens proposed, and incomplete outputs flagged."""

import json

import pytest
import torch

from constrain_tiny import char_model, ids
from decodekit.api import generate
from decodekit.constrain import Grammar, grammar_from_options
from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.speculative.tree import graft

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
          "additionalProperties": False}


@pytest.fixture(scope="module")
def model():
    return char_model(64, seed=5)


@pytest.mark.parametrize("make", [
    lambda: Grammar.regex("(ab"),
    lambda: Grammar.regex(""),
    lambda: Grammar.lark("start: foo"),
    lambda: Grammar.json_schema("{not json"),
    lambda: Grammar.json_schema({"type": "strin"}),
    lambda: Grammar.json_schema({"type": "object", "dependentSchemas": {"a": {}}}),
    lambda: Grammar.json_schema([1, 2]),
    lambda: Grammar.json(whitespace="tabs"),
])
def test_bad_grammars_are_one_line_user_errors(make):
    with pytest.raises(UserError) as caught:
        make()
    assert "\n" not in str(caught.value) and str(caught.value)


def test_unsupported_schema_keywords_are_named():
    with pytest.raises(UserError, match="dependentSchemas"):
        Grammar.json_schema({"type": "object", "dependentSchemas": {"a": {}}})


def test_options_read_files_and_inline_json(tmp_path):
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    assert grammar_from_options(json_schema=str(schema_file)).schema == SCHEMA
    assert grammar_from_options(json_schema=json.dumps(SCHEMA)).schema == SCHEMA
    lark = tmp_path / "g.lark"
    lark.write_text('start: "yes" | "no"')
    assert grammar_from_options(lark=str(lark)).kind == "lark"
    assert grammar_from_options(regex="[0-9]+").kind == "regex"
    assert grammar_from_options(json_value=True).kind == "json"
    assert grammar_from_options() is None
    with pytest.raises(UserError, match="--json-schema: no such file"):
        grammar_from_options(json_schema=str(tmp_path / "missing.json"))
    with pytest.raises(UserError, match="at most one constraint"):
        grammar_from_options(regex="a", json_value=True)


def test_masks_follow_each_path_and_leave_the_committed_state_alone(model):
    grammar = Grammar.regex(r"(ab|cd)+e")
    processor = grammar.bind(model)
    processor.reset([1])
    a, b, c, d, e = ids("abcde")
    logits = torch.zeros(4, model.vocab_size)
    out = processor.process(logits, [[], [a], [a, b], [c, d, e]])
    allowed = [set(row.isfinite().nonzero().flatten().tolist()) for row in out]
    assert allowed == [{a, c}, {b}, {a, c, e}, {0}]  # after "cde" the grammar is done: end-of-sequence only
    assert processor.allows([a], b) and not processor.allows([a], a) and not processor.allows([], e)
    assert not processor.allows([a, a], b)  # below a forbidden token nothing is allowed
    processor.accept([a, b])  # processing did not move the committed state: "ab" is still where it starts
    assert set(processor.process(logits[:1], [[]])[0].isfinite().nonzero().flatten().tolist()) == {a, c, e}
    assert processor.satisfied() is False
    processor.accept([e])
    assert processor.satisfied() is True


def test_end_of_sequence_only_where_the_grammar_accepts(model):
    processor = Grammar.regex(r"a+").bind(model)
    processor.reset([1])
    a = ids("a")[0]
    assert not processor.allows([], 0) and processor.allows([a], 0) and processor.allows([a, a], 0)


def test_each_path_mask_is_computed_once_and_kept_across_the_commit(model):
    grammar = Grammar.regex(r"[a-c]{1,6}")
    processor = grammar.bind(model)
    processor.reset([1])
    a, b = ids("ab")
    paths = [[], [a], [a, b], [b]]
    processor.process(torch.zeros(4, model.vocab_size), paths)
    for path in paths:
        processor.allows(path, a)
    assert grammar.stats.masks == 4
    processor.accept([a, b])  # the mask below the committed tokens is the next root's
    processor.process(torch.zeros(1, model.vocab_size), [[]])
    assert grammar.stats.masks == 4


def test_the_continuation_is_forced_tokens_then_fast_forward(model):
    processor = Grammar.regex(r"abc(d|e)").bind(model)
    processor.reset([1])
    assert processor.continuation(8) == ids("abc")
    assert processor.continuation(2) == ids("ab")
    processor.accept(ids("abcd"))
    assert processor.continuation(8) == [0]  # nothing left but end-of-sequence


def test_clones_are_independent(model):
    processor = Grammar.regex(r"(ab|cd)+").bind(model)
    processor.reset([1])
    twin = processor.clone()
    twin.accept(ids("ab"))
    assert processor.allows([], ids("a")[0]) and not processor.allows([], 0)
    assert twin.allows([], 0)


def test_an_output_cut_by_the_length_limit_is_incomplete(model):
    grammar = Grammar.regex(r"(ab[c-f]{1,3} ){4}end")
    result = generate(ids("abcd abef "), model, max_new_tokens=5, constraint=grammar)
    assert result.finish_reason == "length" and result.complete is False
    assert result.to_json()["complete"] is False
    done = generate(ids("abcd abef "), model, max_new_tokens=60, constraint=grammar)
    assert done.finish_reason == "eos" and done.complete is True and done.to_json()["complete"] is True
    assert "complete" not in generate(ids("abcd abef "), model, max_new_tokens=5).to_json()


def test_json_schema_outputs_validate():
    model = char_model(71, seed=5)  # with the JSON punctuation among its characters
    grammar = Grammar.json_schema({"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "required": ["a"],
                                   "additionalProperties": False}, whitespace="fixed")
    result = generate(ids("abcd"), model, max_new_tokens=40, constraint=grammar)
    assert result.complete is True and grammar.valid(result.text)
    assert result.text in ('{"a": "x"}', '{"a": "y"}')
    assert result.stats["forced_tokens"] >= 6  # {"a": " is forced character by character
    assert grammar.valid('{"a": "z"}') is False and grammar.valid("not json") is False


def test_graft_puts_a_chain_on_a_root_path_and_keeps_the_rest():
    draft = Draft([5, 6, 7], [-1, 0, -1], torch.full((3, 8), 1 / 8))
    grafted = graft(draft, [5, 2, 3])
    assert grafted.tokens == [5, 6, 7, 2, 3] and grafted.parents == [-1, 0, -1, 0, 3]
    assert torch.equal(grafted.q[:3], draft.q) and grafted.q[3, 2] == 1 and grafted.q[4, 3] == 1
    assert graft(draft, [5, 6]) is draft and graft(draft, []) is draft
    aux = Draft([5], [-1], aux_tokens=[9, 9], aux_depths=[1, 2], aux_mask=torch.ones(2, 4, dtype=torch.bool))
    with_aux = graft(aux, [1])
    assert with_aux.aux_mask.shape == (2, 5) and not with_aux.aux_mask[:, 2].any()
