"""External baselines, run in the same process on the same prompt token ids as decodekit's methods.

- `hf`: transformers `generate` (greedy, or plain temperature sampling).
- `hf-pld`: the same with prompt lookup decoding (`prompt_lookup_num_tokens=10`, as Spec-Bench's PLD).
- `hf-assisted`: the same with a draft model that shares the tokenizer (`assistant_model`).
- `llamacpp`, `llamacpp-pld`: llama-cpp-python on the model's GGUF file, plain and with its prompt lookup
  drafter (`LlamaPromptLookupDecoding(num_pred_tokens=10)`); an optional extra (`make llamacpp`).

Target forwards are counted, and timed, by hooks on the target (forward hooks for transformers, a wrapper
round `Llama.eval` for llama.cpp), so these baselines report the same counts as decodekit's own loop. The
first target forward reads the prompt (and yields the first token): its time is the prefill's, the later
forwards' time is verification's, as in decodekit's loop.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from decodekit.bench.outcome import Outcome
from decodekit.errors import UserError
from decodekit.models.catalog import gguf_path, lookup
from decodekit.models.conversion_cache import cache_root
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import SamplingConfig

BASELINES = {
    "hf": "transformers generate (greedy or temperature sampling)",
    "hf-pld": "transformers generate with prompt lookup decoding (prompt_lookup_num_tokens=10)",
    "hf-assisted": "transformers generate with a draft model of the same tokenizer (--draft-model)",
    "llamacpp": "llama-cpp-python on the same GGUF file",
    "llamacpp-pld": "llama-cpp-python with its prompt lookup drafter (num_pred_tokens=10)",
}
LLAMACPP = ("llamacpp", "llamacpp-pld")
LOOKUP_TOKENS = 10


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


class _ForwardClock:
    """Counts and times forward calls; `first` is the first call's time (the prefill)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self.first = 0.0
        self._began = 0.0

    def begin(self, *_) -> None:
        self._began = time.perf_counter()

    def end(self, *_) -> None:
        elapsed = time.perf_counter() - self._began
        self.calls += 1
        self.seconds += elapsed
        if self.calls == 1:
            self.first = elapsed

    @contextmanager
    def watching(self, module: torch.nn.Module) -> Iterator[_ForwardClock]:
        handles = [module.register_forward_pre_hook(self.begin), module.register_forward_hook(self.end)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


class HFGenerate:
    """`model.generate` on the target, plain, with prompt lookup, or assisted by a draft model."""

    def __init__(self, target: LoadedModel, name: str, assistant: LoadedModel | None = None) -> None:
        if name == "hf-assisted" and assistant is None:
            raise UserError("hf-assisted needs --draft-model (a model with the target's tokenizer)")
        if target.backend.name == "llamacpp":
            raise UserError(f"{name} runs transformers weights, which --backend llamacpp does not load: "
                            "bench it on the default backend")
        if assistant is not None and assistant.model is target.model:
            raise ValueError("the assistant must be its own model instance, or its forwards count as the target's")
        self.target = target
        self.name = name
        self.assistant = assistant

    def __call__(self, prompt_ids: list[int], max_new_tokens: int, sampling: SamplingConfig) -> Outcome:
        target = self.target
        inputs = torch.tensor([prompt_ids], device=target.device)
        eos = sorted(target.eos_token_ids)
        kwargs = dict(
            input_ids=inputs, attention_mask=torch.ones_like(inputs), eos_token_id=eos, pad_token_id=eos[0],
            max_new_tokens=min(max_new_tokens, target.context_length - len(prompt_ids)),
            do_sample=not sampling.greedy,
        )
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_k=0, top_p=1.0)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
        if self.name == "hf-pld":
            kwargs["prompt_lookup_num_tokens"] = LOOKUP_TOKENS
        if self.assistant is not None:
            kwargs["assistant_model"] = self.assistant.model
        clock, draft_clock = _ForwardClock(), _ForwardClock()
        with clock.watching(target.model):
            if self.assistant is not None:
                with draft_clock.watching(self.assistant.model):
                    start = time.perf_counter()
                    output = target.model.generate(**kwargs)
            else:
                start = time.perf_counter()
                output = target.model.generate(**kwargs)
            seconds = time.perf_counter() - start
        tokens = output[0, len(prompt_ids):].tolist()
        if tokens and tokens[-1] in target.eos_token_ids:
            finish = "eos"
        else:
            finish = "length"
        drafting = {"hf": 0.0, "hf-pld": None, "hf-assisted": draft_clock.seconds}[self.name]
        return Outcome(
            token_ids=tokens, finish_reason=finish, seconds=seconds, forward_passes=clock.calls,
            steps=clock.calls, prefill_seconds=clock.first, draft_forward_passes=draft_clock.calls,
            draft_seconds=drafting, verify_seconds=clock.seconds - clock.first,
        )


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
        self.clock = _ForwardClock()
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
        self.clock = _ForwardClock()
        if self.lookup is not None:
            self.lookup.seconds = 0.0
        tokens: list[int] = []
        finish = "length"
        start = time.perf_counter()
        for token in llm.generate(prompt_ids, temp=sampling.temperature, top_k=0, top_p=1.0, min_p=0.0,
                                  typical_p=1.0, repeat_penalty=1.0):
            tokens.append(int(token))
            if token in self.eos:
                finish = "eos"
                break
            if len(tokens) >= limit:
                break
        seconds = time.perf_counter() - start
        return Outcome(
            token_ids=tokens, finish_reason=finish, seconds=seconds, forward_passes=self.clock.calls,
            steps=self.clock.calls, prefill_seconds=self.clock.first,
            draft_seconds=self.lookup.seconds if self.lookup is not None else 0.0,
            verify_seconds=self.clock.seconds - self.clock.first,
        )
