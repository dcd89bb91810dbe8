"""The transformers baselines: `hf`, `hf-pld` and `hf-assisted` (see the package docstring)."""

from __future__ import annotations

import time

import torch

from decodekit.bench.baselines import LOOKUP_TOKENS
from decodekit.bench.baselines.forward_clock import ForwardClock
from decodekit.bench.outcome import Outcome
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import SamplingConfig


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
        clock, draft_clock = ForwardClock(), ForwardClock()
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
