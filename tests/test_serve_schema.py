"""The OpenAI request parser without a server: what it accepts, what it refuses and with which param."""

import pytest

from decodekit.serve.errors import APIError
from decodekit.serve.openai_schema import parse_chat, parse_completion

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def refused(parse, body):
    with pytest.raises(APIError) as caught:
        parse(body)
    assert caught.value.status == 400
    return caught.value.param


def test_chat_fields_become_params():
    parsed = parse_chat({**CHAT, "messages": [{"role": "developer", "content": [{"type": "text", "text": "be"},
                                                                               {"type": "text", "text": " brief"}]},
                                              {"role": "user", "content": "hi"}],
                         "max_tokens": 9, "max_completion_tokens": 5, "temperature": 0.5, "top_p": 0.9, "seed": 3,
                         "stop": "END", "n": 2, "logprobs": True, "top_logprobs": 4, "stream": True,
                         "stream_options": {"include_usage": True}, "user": "someone", "frequency_penalty": 0,
                         "decodekit": {"method": "pld", "num_draft": 5, "top_k": 40, "options": {"ngram": 3}}})
    p = parsed.params
    assert parsed.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (p.max_tokens, p.n, p.logprobs, p.stop, p.stream, p.include_usage) == (5, 2, 4, ("END",), True, True)
    assert (p.sampling.temperature, p.sampling.top_p, p.sampling.seed, p.sampling.top_k) == (0.5, 0.9, 3, 40)
    assert (p.method, p.num_draft, p.options) == ("pld", 5, {"ngram": 3})
    defaults = parse_chat(CHAT).params
    assert defaults.sampling.temperature == 1.0 and defaults.logprobs is None and defaults.max_tokens is None


@pytest.mark.parametrize("extra, param", [
    ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
    ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
    ({"n": 0}, "n"), ({"n": True}, "n"), ({"seed": 1.5}, "seed"), ({"top_p": 0}, "top_p"),
    ({"presence_penalty": 0.5}, "presence_penalty"), ({"logit_bias": {"5": 10}}, "logit_bias"),
    ({"stop": [""]}, "stop"), ({"stop": 5}, "stop"), ({"model": 3}, "model"),
    ({"decodekit": {"speed": "max"}}, "decodekit.speed"), ({"decodekit": {"options": {"draft_model": "x"}}},
                                                           "decodekit.options.draft_model"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{}]}]}, "messages[0]"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "response_format.json_schema"),
])
def test_chat_refusals_name_the_field(extra, param):
    assert refused(parse_chat, {**CHAT, **extra}) == param


def test_completion_prompts_in_every_form():
    base = {"model": "m", "max_tokens": 4}
    assert parse_completion({**base, "prompt": "a"}).prompts == ["a"]
    assert parse_completion({**base, "prompt": ["a", "b"], "n": 2}).prompts == ["a", "b"]
    assert parse_completion({**base, "prompt": [1, 2, 3]}).prompts == [[1, 2, 3]]
    assert parse_completion({**base, "prompt": [[1, 2], [3]], "logprobs": 2}).params.logprobs == 2
    assert parse_completion({**base, "prompt": "a", "echo": False, "best_of": 1}).params.n == 1
    assert refused(parse_completion, {**base, "prompt": [1, "a"]}) == "prompt"
    assert refused(parse_completion, {**base, "prompt": "a", "echo": True}) == "echo"
    assert refused(parse_completion, {**base, "prompt": "a", "best_of": 3}) == "best_of"
    assert refused(parse_completion, {**base, "prompt": "a", "logprobs": 6}) == "logprobs"
    assert refused(parse_completion, {**base, "prompt": ["a"] * 9, "n": 2}) == "prompt"
