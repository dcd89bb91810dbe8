"""The llama.cpp baselines: `llamacpp` and `llamacpp-pld` on the model's GGUF file (see the package docstring)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import torch

from decodekit.bench.baselines import LOOKUP_TOKENS
from decodekit.bench.baselines.forward_clock import ForwardClock
from decodekit.bench.outcome import Outcome
from decodekit.errors import UserError
from decodekit.models.catalog import gguf_path, lookup
from decodekit.models.conversion_cache import cache_root
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import SamplingConfig


def llamacpp_missing() -> str | None:
    """Why the llama.cpp baselines cannot run here, or None when llama-cpp-python is installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (make llamacpp builds it)"
    return None


def gguf_file(model: str) -> Path | None:
    """The GGUF file behind a model name: a catalog entry's file or a .gguf path; None for other models."""
    entry = lookup(model)
    if entry is not None:
        return gguf_path(entry, cache_root())
    if model.endswith(".gguf"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise UserError(f"GGUF file not found: {model}")
        return path
    return None


def take_tokens(stream, eos: frozenset[int], limit: int) -> tuple[list[int], str]:
    """The tokens of `Llama.generate`'s endless stream up to an end-of-sequence token (kept) or `limit` of
    them, and why it stopped: "eos" or "length"."""
    tokens: list[int] = []
    for token in stream:
        tokens.append(int(token))
        if token in eos:
            return tokens, "eos"
        if len(tokens) >= limit:
            break
    return tokens, "length"


class LlamaCppGenerate:
    """llama-cpp-python's `Llama.generate` on a GGUF file, plain or with its prompt lookup drafter."""

    def __init__(self, gguf: Path, target: LoadedModel, name: str, n_ctx: int) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        class TimedLookup(LlamaPromptLookupDecoding):
            seconds = 0.0

            def __call__(self, input_ids, **kwargs):
                began = time.perf_counter()
                try:
                    return super().__call__(input_ids, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - began

        threads = torch.get_num_threads()
        self.lookup = TimedLookup(num_pred_tokens=LOOKUP_TOKENS) if name == "llamacpp-pld" else None
        # A draft model needs the logits of every evaluated position: logits_all=True sizes that buffer.
        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads,
                         n_threads_batch=threads, logits_all=self.lookup is not None, draft_model=self.lookup,
                         verbose=False)
        self.eos = target.eos_token_ids | {self.llm.token_eos()}
        self.clock = ForwardClock()
        evaluate = self.llm.eval

        def counted_eval(tokens):
            self.clock.begin()
            try:
                return evaluate(tokens)
            finally:
                self.clock.end()

        self.llm.eval = counted_eval

    def __call__(self, prompt_ids: list[int], max_new_tokens: int, sampling: SamplingConfig) -> Outcome:
        llm = self.llm
        limit = min(max_new_tokens, llm.n_ctx() - len(prompt_ids))
        llm.reset()  # no reuse of the previous request's KV cache: every request pays its own prefill
        if sampling.seed is not None:
            llm.set_seed(sampling.seed)
        self.clock = ForwardClock()
        if self.lookup is not None:
            self.lookup.seconds = 0.0
        start = time.perf_counter()
        tokens, finish = take_tokens(llm.generate(prompt_ids, temp=sampling.temperature, top_k=0, top_p=1.0,
                                                  min_p=0.0, typical_p=1.0, repeat_penalty=1.0), self.eos, limit)
        seconds = time.perf_counter() - start
        return Outcome(
            token_ids=tokens, finish_reason=finish, seconds=seconds, forward_passes=self.clock.calls,
            steps=self.clock.calls, prefill_seconds=self.clock.first,
            draft_seconds=self.lookup.seconds if self.lookup is not None else 0.0,
            verify_seconds=self.clock.seconds - self.clock.first,
        )
