"""The served model: what turns a parsed API request into the scheduler's works, and back.

An `Engine` owns a `Session` (the loaded target and draft model, what drafters keep), the scheduler and the
metrics. It tokenises prompts (chat messages through the model's chat template) with its own copy of the
tokenizer, so the API thread never shares one with the scheduler's thread; checks lengths against the
context and the server's limits; resolves each request's method (the request's `decodekit.method`, else
the server's) and its options (the server's draft model for `draft`); and builds decoders for the scheduler.

Learned drafter state (Token Recycling's matrix, n-gram counts, the `auto` bandit's statistics) follows
`learning`: "request" (the default) gives every sequence a scope of its own, dropped when it leaves the batch,
so nothing one user's text taught a drafter reaches another's; "shared" keeps one scope for the whole server
(drafters adapt across requests, and the speed of one request may then depend on earlier ones; the tokens
never do).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import replace

from decodekit.core import DecodeRequest
from decodekit.drafting.cost_curve import CostCurve, cost_curve
from decodekit.errors import ParameterError, UserError
from decodekit.methods import build_decoder, get_method
from decodekit.models.loaded import LoadedModel
from decodekit.serve.config import ServeConfig
from decodekit.serve.errors import APIError
from decodekit.serve.metrics import Metrics
from decodekit.serve.openai_schema import Params
from decodekit.serve.scheduler import Scheduler, Sink, Work
from decodekit.session import Session
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.step import prefill, step

SHARED_SCOPE = "served"
WARM_UP_SCOPE = "warm-up"


class Engine:
    def __init__(self, config: ServeConfig, model: LoadedModel | None = None, session: Session | None = None
                 ) -> None:
        self.config = config
        self.session = session or Session()
        get_method(config.method, self.options_for(config.method, {}))  # a UserError before any model loads
        self.model = self.session.model(model or config.model, dtype=config.dtype, threads=config.threads)
        self.name = config.model if model is None else model.name  # the model id clients send
        self.encoder = copy.deepcopy(self.model.tokenizer)  # the API thread's own tokenizer
        self.metrics = Metrics()
        self.scheduler = Scheduler(self.model, self.decoder, max_batch=config.max_batch,
                                   max_queue=config.max_queue, metrics=self.metrics,
                                   batch_cost=self.cost_curve if config.max_batch > 1 else None)
        self.created = int(time.time())
        self._scopes = itertools.count()

    # --- methods and decoders ---

    def options_for(self, method: str, options: dict) -> dict:
        """A request's method options with the server's own (its draft model) added."""
        merged = dict(options)
        if self.config.draft_model is not None and "draft_model" in get_method(method).options:
            merged["draft_model"] = self.config.draft_model
        return merged

    def check_method(self, method: str, options: dict) -> dict:
        try:
            get_method(method)
            merged = self.options_for(method, options)
            get_method(method, merged)
        except UserError as error:
            raise APIError(400, str(error), "decodekit.method", "invalid_method") from None
        return merged

    def decoder(self, method: str, options: dict) -> tuple[Decoder, Callable[[], None]]:
        """A fresh decoder for one sequence, and what drops the state it learned (scheduler's thread)."""
        if self.config.learning == "shared":
            return build_decoder(method, self.model, self.session, options, SHARED_SCOPE), _nothing
        scope = f"request-{next(self._scopes)}"
        decoder = build_decoder(method, self.model, self.session, options, scope)
        return decoder, lambda: self.session.forget(scope)

    def cost_curve(self) -> CostCurve:
        """The model's forward time against its new tokens (measured once, kept by the session): what the
        scheduler sizes drafts under load by."""
        return cost_curve(self.model, self.session.store())

    def warm_up(self) -> None:
        """Before the scheduler starts: build the default method's decoder and run two steps of it, so that
        the first request waits neither for a cost curve to be measured, a draft model to load, nor the
        backend's first-forward work (packing weights). Under a scope of its own, dropped after: the warm-up
        teaches the drafters nothing."""
        if self.scheduler.batch_cost is not None:
            self.cost_curve()
        method = self.config.method
        decoder = build_decoder(method, self.model, self.session, self.options_for(method, {}), WARM_UP_SCOPE)
        cache = self.scheduler.pool.acquire()
        try:
            prompt = self.encode_prompt("Hello, world. Hello, world.")
            state = prefill(self.model, DecodeRequest(prompt, 2, num_draft=self.config.num_draft), decoder, method,
                            cache)
            while not state.finished:
                step(state)
        finally:
            self.scheduler.pool.release(cache)
            self.session.forget(WARM_UP_SCOPE)

    # --- prompts ---

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if not getattr(self.encoder, "chat_template", None):
            raise APIError(400, f"model {self.name!r} has no chat template: use /v1/completions", "messages")
        try:
            encoded = self.encoder.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        except Exception as error:  # the template's own checks (jinja raise_exception: role order, ...)
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise APIError(400, f"the model's chat template refused the messages: {message}", "messages",
                           "invalid_value") from None
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return [int(i) for i in ids]

    def encode_prompt(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, list):
            vocab = self.model.vocab_size
            if any(not 0 <= t < vocab for t in prompt):
                raise APIError(400, f"prompt token ids must be between 0 and {vocab - 1}", "prompt",
                               "invalid_value")
            return list(prompt)
        return [int(i) for i in self.encoder(prompt)["input_ids"]]

    def token_text(self, token: int) -> str:
        return self.encoder.decode([token])

    # --- works ---

    def works(self, prompts: list[list[int]], params: Params, sink: Sink, prompt_param: str = "prompt"
              ) -> list[Work]:
        """The scheduler's works for `prompts` (choice index = prompt index * n + i), checked; errors about
        the prompt name `prompt_param` (the chat endpoint's is "messages")."""
        method = params.method or self.config.method
        options = self.check_method(method, params.options)
        processors = self.response_processors(params.response_format)
        context = self.model.context_length
        deadline = self.scheduler.clock() + self.config.request_timeout
        capacity = self.config.max_batch + self.config.max_queue
        if len(prompts) * params.n > capacity:
            raise APIError(400, f"this server runs at most {capacity} sequences at once; the request asks for "
                           f"{len(prompts) * params.n}", "n", "invalid_value")
        works = []
        for p, prompt in enumerate(prompts):
            if not prompt:
                raise APIError(400, "the prompt is empty", prompt_param, "invalid_value")
            if len(prompt) >= context:
                raise APIError(400, f"the prompt has {len(prompt)} tokens; this model's context takes at most "
                               f"{context - 1}", prompt_param, "context_length_exceeded")
            limit = params.max_tokens
            if limit is None:
                limit = min(self.config.max_tokens, context - len(prompt))
            elif limit > self.config.max_tokens:
                raise APIError(400, f"max_tokens is at most {self.config.max_tokens} on this server, got {limit}",
                               "max_tokens", "invalid_value")
            elif len(prompt) + limit > context:
                raise APIError(400, f"the prompt's {len(prompt)} tokens and max_tokens {limit} exceed the "
                               f"context of {context} tokens", "max_tokens", "context_length_exceeded")
            for i in range(params.n):
                sampling = params.sampling
                if sampling.seed is not None and i:
                    sampling = replace(sampling, seed=sampling.seed + i)
                try:
                    request = DecodeRequest(prompt, limit, sampling, params.stop,
                                            params.num_draft or self.config.num_draft, processors,
                                            params.logprobs)
                except ParameterError as error:
                    raise APIError(400, str(error), error.parameter, "invalid_value") from None
                except UserError as error:
                    raise APIError(400, str(error), None, "invalid_value") from None
                works.append(Work(request, method, options, p * params.n + i, sink, deadline))
        return works

    def response_processors(self, response_format: dict | None) -> list:
        """The grammar constraint of a json_object / json_schema response format (decodekit.constrain; the
        parser refuses these formats when that package is not installed)."""
        if response_format is None:
            return []
        from decodekit.constrain import Grammar

        try:
            if response_format["type"] == "json_object":  # OpenAI's json_object: a JSON object, not any value
                return [Grammar.json_schema({"type": "object"})]
            return [Grammar.json_schema(response_format["json_schema"].get("schema", {}))]
        except UserError as error:
            raise APIError(400, str(error), "response_format", "invalid_value") from None


def _nothing() -> None:
    return None
