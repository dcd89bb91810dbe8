"""OpenAI's chat-completions and completions requests, checked field by field, and the shapes of the answers.

Parsing needs no model: `parse_chat` and `parse_completion` turn a JSON body into a `ChatRequest` or a
`CompletionRequest` (the messages or prompts, and the `Params` both share), or raise an `APIError` 400 naming
the field. Rules:

- a field of the API that would change the output and that decodekit does not implement (tools, logit_bias,
  penalties other than 0, audio, echo, ...) is refused unless it carries its neutral value; a field that
  does not change the output (user, metadata, store, ...) is accepted and ignored; a name the API does not
  have is refused, as OpenAI's own server does;
- `max_completion_tokens` (or the older `max_tokens`) is optional; `n` makes independent choices (with a
  seed, choice i samples with seed + i); `stop` is a string or up to 4; `logprobs` are the target's
  processed distribution (what greedy takes the argmax of and sampling draws from);
- decodekit's own field, `"decodekit": {"method": "pld", "options": {...}, "num_draft": 7, "top_k": 0,
  "min_p": 0.0, "repetition_penalty": 1.0}`, picks the decoding method of this request (default: the
  server's) and the sampling knobs OpenAI lacks; options that name files or models (corpus, matrix_file,
  draft_model) are the server's to set, not a request's;
- `response_format` json_object / json_schema constrains the output with a grammar (decodekit.constrain),
  exactly under every decoding method; an output cut by max_tokens inside the grammar ends with
  finish_reason "length".

The builders at the end make the response objects and stream chunks; the response carries decodekit's step
statistics in an extra `decodekit` field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from decodekit.core.request import MAX_LOGPROBS
from decodekit.errors import ParameterError, UserError
from decodekit.sampling import SamplingConfig
from decodekit.serve.errors import APIError

MAX_STOP = 4
MAX_N = 16
MAX_COMPLETION_LOGPROBS = 5
SERVER_OPTIONS = frozenset({"corpus", "matrix_file", "draft_model"})  # paths and models: the server's choice
EXTENSION_FIELDS = frozenset({"method", "options", "num_draft", "top_k", "min_p", "repetition_penalty"})
IGNORED = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls", "safety_identifier",
                     "prompt_cache_key"})
# fields decodekit does not implement: accepted only with the value that leaves the output as it is
NEUTRAL = MappingProxyType({
    "frequency_penalty": lambda v: v is None or (_is_number(v) and v == 0),
    "presence_penalty": lambda v: v is None or (_is_number(v) and v == 0),
    "logit_bias": lambda v: v is None or v == {},
    "tools": lambda v: v is None or v == [],
    "tool_choice": lambda v: v is None or v == "none",
    "functions": lambda v: v is None or v == [],
    "function_call": lambda v: v is None or v == "none",
    "modalities": lambda v: v is None or v == ["text"],
    "audio": lambda v: v is None,
    "prediction": lambda v: v is None,
    "web_search_options": lambda v: v is None,
    "reasoning_effort": lambda v: v is None,
})
COMPLETION_NEUTRAL = MappingProxyType({
    "frequency_penalty": NEUTRAL["frequency_penalty"], "presence_penalty": NEUTRAL["presence_penalty"],
    "logit_bias": NEUTRAL["logit_bias"], "echo": lambda v: v is None or v is False,
    "suffix": lambda v: v is None or v == "",
})
COMMON = frozenset({"model", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "stream",
                    "stream_options", "decodekit"})
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs", "response_format"}
COMPLETION_FIELDS = COMMON | {"prompt", "logprobs", "best_of"}
ROLES = MappingProxyType({"system": "system", "developer": "system", "user": "user", "assistant": "assistant"})


@dataclass
class Params:
    model: str
    max_tokens: int | None  # None: what the context leaves, up to the server's limit
    sampling: SamplingConfig
    stop: tuple[str, ...]
    n: int
    logprobs: int | None  # None: none; k: the chosen token's log-probability and the top k
    stream: bool
    include_usage: bool
    method: str | None  # None: the server's
    options: dict[str, Any] = field(default_factory=dict)
    num_draft: int | None = None
    response_format: dict | None = None  # json_object / json_schema, checked


@dataclass
class ChatRequest:
    params: Params
    messages: list[dict[str, str]]  # role and content, as the chat template takes them


@dataclass
class CompletionRequest:
    params: Params
    prompts: list[str | list[int]]  # text or token ids, one choice set per prompt


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def _check_fields(body: Any, known: frozenset[str], neutral: dict) -> None:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    for name, value in body.items():
        if name in known or name in IGNORED:
            continue
        if name in neutral:
            if not neutral[name](value):
                raise bad(f"{name} is not supported by this server", name, "unsupported_parameter")
            continue
        raise bad(f"Unrecognized request argument supplied: {name}", name, "unrecognized_argument")


def _integer(body: dict, name: str, low: int, high: int | None = None, default: int | None = None
             ) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{name} must be an integer, got {type(value).__name__}", name, "invalid_type")
    if value < low or (high is not None and value > high):
        span = f"at least {low}" if high is None else f"between {low} and {high}"
        raise bad(f"{name} must be {span}, got {value}", name, "invalid_value")
    return value


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not _is_number(value) or not math.isfinite(value):
        raise bad(f"{name} must be a number", name, "invalid_type")
    if not low <= value <= high:
        raise bad(f"{name} must be between {low} and {high}, got {value}", name, "invalid_value")
    return float(value)


def _boolean(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false", name, "invalid_type")
    return value


def _model(body: dict) -> str:
    value = body.get("model")
    if not isinstance(value, str) or not value:
        raise bad("model is required: a model name (see GET /v1/models)", "model", "invalid_type")
    return value


def _stop(body: dict) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad("stop must be a string or a list of strings", "stop", "invalid_type")
    if len(stops) > MAX_STOP:
        raise bad(f"stop takes at most {MAX_STOP} strings, got {len(stops)}", "stop", "invalid_value")
    if any(not s for s in stops):
        raise bad("stop strings must not be empty", "stop", "invalid_value")
    return tuple(stops)


def _extension(body: dict) -> dict:
    value = body.get("decodekit")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad("decodekit must be an object", "decodekit", "invalid_type")
    unknown = sorted(set(value) - EXTENSION_FIELDS)
    if unknown:
        raise bad(f"decodekit takes {', '.join(sorted(EXTENSION_FIELDS))}; not {', '.join(unknown)}",
                  f"decodekit.{unknown[0]}", "unrecognized_argument")
    method = value.get("method")
    if method is not None and not isinstance(method, str):
        raise bad("decodekit.method must be a method name", "decodekit.method", "invalid_type")
    options = value.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise bad("decodekit.options must be an object", "decodekit.options", "invalid_type")
    for key, option in options.items():
        if key in SERVER_OPTIONS:
            raise bad(f"decodekit.options.{key} is set by the server, not by a request", f"decodekit.options.{key}",
                      "unsupported_parameter")
        if not (option is None or _is_number(option) or isinstance(option, str)):
            raise bad(f"decodekit.options.{key} must be a number or a string", f"decodekit.options.{key}",
                      "invalid_type")
    return value


def _params(body: dict, logprobs: int | None, max_tokens_name: str) -> Params:
    extension = _extension(body)
    n = _integer(body, "n", 1, MAX_N, 1)
    stream = _boolean(body, "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise bad("stream_options is only allowed with stream: true", "stream_options", "invalid_value")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise bad("stream_options takes include_usage only", "stream_options", "invalid_value")
        include_usage = _boolean(options, "include_usage")
    try:
        sampling = SamplingConfig(
            temperature=_number(body, "temperature", 0.0, 2.0, 1.0),  # OpenAI's default
            top_p=_number(body, "top_p", 0.0, 1.0, 1.0),
            seed=_integer(body, "seed", -(2**63), 2**63 - 1),
            top_k=_integer(extension, "top_k", 0, None, 0) or 0,
            min_p=_number(extension, "min_p", 0.0, 1.0, 0.0),
            repetition_penalty=_number(extension, "repetition_penalty", 0.0, 10.0, 1.0),
        )
    except ParameterError as error:
        raise bad(str(error), error.parameter, "invalid_value") from None
    except UserError as error:
        raise bad(str(error), None, "invalid_value") from None
    return Params(
        model=_model(body), max_tokens=_integer(body, max_tokens_name, 1), sampling=sampling, stop=_stop(body),
        n=n, logprobs=logprobs, stream=stream, include_usage=include_usage, method=extension.get("method"),
        options=dict(extension.get("options") or {}),
        num_draft=_integer(extension, "num_draft", 1, 64), response_format=None,
    )


def _text_content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"{where}.content: only text parts are supported", f"{where}.content", "invalid_value")
            parts.append(part["text"])
        return "".join(parts)
    raise bad(f"{where}.content must be a string or a list of text parts", f"{where}.content", "invalid_type")


def _messages(body: dict) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list", "messages", "invalid_type")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object", where, "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role",
                      "invalid_value")
        if message.get("tool_calls") or message.get("function_call"):
            raise bad(f"{where}: tool calls are not supported", where, "unsupported_parameter")
        unknown = set(message) - {"role", "content", "name", "tool_calls", "function_call", "refusal"}
        if unknown:
            raise bad(f"{where}: unrecognized field {sorted(unknown)[0]}", where, "unrecognized_argument")
        out.append({"role": ROLES[role], "content": _text_content(message.get("content"), where)})
    return out


def _response_format(body: dict) -> dict | None:
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise bad("response_format.type must be text, json_object or json_schema", "response_format",
                  "invalid_value")
    if value["type"] == "text":
        return None
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad("response_format.json_schema needs a name and a schema", "response_format.json_schema",
                      "invalid_value")
        schema = spec.get("schema", {})
        if not isinstance(schema, (dict, bool)):
            raise bad("response_format.json_schema.schema must be a JSON schema object",
                      "response_format.json_schema.schema", "invalid_type")
    return value


def parse_chat(body: Any) -> ChatRequest:
    _check_fields(body, CHAT_FIELDS, NEUTRAL)
    top = _integer(body, "top_logprobs", 0, MAX_LOGPROBS)
    wants = _boolean(body, "logprobs")
    if top is not None and not wants:
        raise bad("top_logprobs needs logprobs: true", "top_logprobs", "invalid_value")
    max_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    params = _params(body, (top or 0) if wants else None, max_name)
    params.response_format = _response_format(body)
    return ChatRequest(params, _messages(body))


def parse_completion(body: Any) -> CompletionRequest:
    _check_fields(body, COMPLETION_FIELDS, COMPLETION_NEUTRAL)
    logprobs = _integer(body, "logprobs", 0, MAX_COMPLETION_LOGPROBS)
    params = _params(body, logprobs, "max_tokens")
    best_of = _integer(body, "best_of", 1)
    if best_of is not None and best_of != params.n:
        raise bad("best_of other than n is not supported", "best_of", "unsupported_parameter")
    if best_of is not None and params.stream and best_of > 1:
        raise bad("best_of cannot be streamed", "best_of", "invalid_value")
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts: list = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        prompts = [list(prompt)]
    elif (isinstance(prompt, list) and prompt and all(isinstance(p, list) and p for p in prompt)
          and all(isinstance(t, int) and not isinstance(t, bool) for p in prompt for t in p)):
        prompts = [list(p) for p in prompt]
    else:
        raise bad("prompt must be a string, a list of strings, a list of token ids or a list of such lists",
                  "prompt", "invalid_type")
    if len(prompts) * params.n > MAX_N:
        raise bad(f"prompts times n must be at most {MAX_N}", "prompt", "invalid_value")
    return CompletionRequest(params, prompts)


# --- responses ---

FINISH_REASONS = MappingProxyType({"eos": "stop", "stop": "stop", "length": "length"})


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_logprobs(entries: list[tuple[str, float, list[tuple[str, float]]]]) -> dict:
    """`entries`: per token, its text, log-probability and the top alternatives (text, log-probability)."""
    def item(text: str, logprob: float) -> dict:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**item(text, lp), "top_logprobs": [item(t, v) for t, v in top]}
                        for text, lp, top in entries], "refusal": None}


def completion_logprobs(entries: list[tuple[str, float, list[tuple[str, float]]]], offset: int = 0) -> dict:
    tokens, offsets, position = [], [], offset
    for text, _, _ in entries:
        tokens.append(text)
        offsets.append(position)
        position += len(text)
    return {"tokens": tokens, "token_logprobs": [lp for _, lp, _ in entries],
            "top_logprobs": [{t: v for t, v in top} for _, _, top in entries], "text_offset": offsets}


def chat_completion(ident: str, created: int, model: str, choices: list[dict], usage_: dict, stats: dict) -> dict:
    return {"id": ident, "object": "chat.completion", "created": created, "model": model, "choices": choices,
            "usage": usage_, "system_fingerprint": None, "decodekit": stats}


def chat_choice(index: int, text: str, finish: str, logprobs: dict | None) -> dict:
    return {"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": logprobs, "finish_reason": FINISH_REASONS.get(finish, finish)}


def chat_chunk(ident: str, created: int, model: str, choices: list[dict], usage_: dict | None = None,
               stats: dict | None = None) -> dict:
    chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": choices, "system_fingerprint": None}
    if usage_ is not None:
        chunk["usage"] = usage_
    if stats is not None:
        chunk["decodekit"] = stats
    return chunk


def chat_delta(index: int, delta: dict, finish: str | None = None, logprobs: dict | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs,
            "finish_reason": None if finish is None else FINISH_REASONS.get(finish, finish)}


def text_completion(ident: str, created: int, model: str, choices: list[dict], usage_: dict | None,
                    stats: dict | None, chunk: bool = False) -> dict:
    body = {"id": ident, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "system_fingerprint": None}
    if usage_ is not None or not chunk:
        body["usage"] = usage_
    if stats is not None:
        body["decodekit"] = stats
    return body


def text_choice(index: int, text: str, finish: str | None, logprobs: dict | None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs,
            "finish_reason": None if finish is None else FINISH_REASONS.get(finish, finish)}


def model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "decodekit"}
