"""A grammar constraint for a request, on llguidance: a JSON schema, any JSON value, a regular expression or a
Lark grammar, checked when it is made (before any model loads) and bound to a model's tokenizer per request.

    Grammar.json_schema({"type": "object", ...})   # a dict or its JSON text
    Grammar.json()                                # any JSON value
    Grammar.regex(r"[0-9]{3}-[0-9]{4}")           # the whole output must match
    Grammar.lark('start: "yes" | "no"')           # llguidance's Lark dialect

Pass one in a request's processors (`decodekit.generate(..., processors=[Grammar.json()])`): each request
gets its own `GrammarProcessor` (processor.py) from `bind(model)`, so one Grammar serves any number of
requests. The grammar applies to the generated text only, not the prompt.

Rule for bad input: llguidance compiles the grammar without a tokenizer (`LLMatcher.validate_grammar`) and a
schema is also checked against its JSON Schema meta-schema (`jsonschema`); any error, an unsupported schema
keyword included, is a one-line UserError. Unimplemented keywords are never ignored (llguidance's `lenient`
stays off), so an output the grammar allows is valid under the whole schema.

Defaults: JSON whitespace "flexible" (llguidance's default: any JSON whitespace between tokens, the model lays
the value out); "fixed" allows only `json.dumps`'s layout (", " and ": ", no other whitespace), which leaves
the grammar more tokens to force.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any

import jsonschema
import llguidance

from decodekit.constrain.processor import GrammarProcessor, MaskStats
from decodekit.constrain.tokenizer import grammar_tokenizer
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel

WHITESPACE = MappingProxyType({  # llguidance's JSON compile options for each choice (read-only)
    "flexible": MappingProxyType({}),
    "fixed": MappingProxyType({"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}),
})


class Grammar:
    def __init__(self, kind: str, grammar: str, description: str, schema: dict | bool | None = None) -> None:
        """Prefer the constructors below; `grammar` is llguidance's grammar text, checked here."""
        error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
        if error:
            raise UserError(f"{description}: {one_line(messages[0] if messages else 'invalid grammar')}")
        self.kind = kind
        self.grammar = grammar
        self.description = description
        self.schema = schema  # the JSON schema that outputs must satisfy (json_schema and json)
        self.stats = MaskStats()
        # per llguidance tokenizer (by identity, held so that the id stays its own): the matcher at its start
        self._compiled: dict[int, tuple[llguidance.LLTokenizer, llguidance.LLMatcher]] = {}

    @classmethod
    def json_schema(cls, schema: dict | bool | str, whitespace: str = "flexible") -> Grammar:
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as error:
                raise UserError(f"the JSON schema is not valid JSON: {error}") from None
        if not isinstance(schema, dict | bool):
            raise UserError(f"a JSON schema is an object (or true/false), got {type(schema).__name__}")
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as error:
            raise UserError(f"invalid JSON schema: {one_line(error.message)}") from None
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_whitespace(whitespace))
        return cls("json_schema", grammar, "unsupported JSON schema", schema)

    @classmethod
    def json(cls, whitespace: str = "flexible") -> Grammar:
        grammar = llguidance.LLMatcher.grammar_from_json_schema({}, overrides=_whitespace(whitespace))
        return cls("json", grammar, "JSON grammar", {})

    @classmethod
    def regex(cls, pattern: str) -> Grammar:
        if not pattern:
            raise UserError("the regular expression is empty")
        return cls("regex", llguidance.LLMatcher.grammar_from_regex(pattern), f"invalid regular expression {pattern!r}")

    @classmethod
    def lark(cls, text: str) -> Grammar:
        if not text.strip():
            raise UserError("the Lark grammar is empty")
        return cls("lark", llguidance.LLMatcher.grammar_from_lark(text), "invalid Lark grammar")

    def bind(self, model: LoadedModel) -> GrammarProcessor:
        """A fresh processor for one request on `model`: a copy of the grammar compiled once per tokenizer."""
        tokenizer = grammar_tokenizer(model)
        held = self._compiled.get(id(tokenizer))
        if held is None or held[0] is not tokenizer:
            matcher = llguidance.LLMatcher(tokenizer, self.grammar, log_level=0)
            if matcher.is_error():
                raise UserError(f"{self.description}: {one_line(matcher.get_error())}")
            held = self._compiled[id(tokenizer)] = (tokenizer, matcher)
        return GrammarProcessor(held[1].deep_copy(), frozenset(tokenizer.eos_tokens), model.vocab_size, self.stats)

    def valid(self, text: str) -> bool | None:
        """Whether `text` is a JSON value that satisfies the schema (None for regex and Lark grammars)."""
        if self.schema is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return jsonschema.validators.validator_for(self.schema)(self.schema).is_valid(value)

    def __repr__(self) -> str:
        return f"Grammar.{self.kind}(...)"


def _whitespace(whitespace: str) -> dict[str, Any]:
    if whitespace not in WHITESPACE:
        raise UserError(f"JSON whitespace must be one of {', '.join(WHITESPACE)}, got {whitespace!r}")
    return dict(WHITESPACE[whitespace])


def one_line(message: str) -> str:
    """llguidance's message without its source excerpt (the `N | ...` lines and the `^` under them)."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and set(line) != {"^"} and not re.match(r"\d+ \|", line)]
    return re.sub(r"^at \d+\(\d+\): ", "", " ".join(kept))
