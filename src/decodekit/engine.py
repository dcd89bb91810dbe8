"""The decoding loop that every autoregressive method shares.

    prefill(prompt[:-1]); root = prompt[-1]
    while not done:
        draft   = drafter.propose(context, budget)      # a token tree; empty for plain decoding
        logits  = forward([root] + draft, tree mask)      # one target forward per step
        verdict = verify(draft, logits, sampling)         # greedy or exact speculative sampling
        cache.keep(root + accepted path); root = last committed token
        drafter.observe(...); emit tokens, stop at EOS / stop strings / max_new_tokens

The root (the last committed token) is not yet in the KV cache when a step starts: it is forwarded with the
draft, and its logits row gives the distribution of the draft's first token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from decodekit.defaults import NUM_DRAFT
from decodekit.drafting.base import Draft, Drafter
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import SamplingConfig, entropy_and_margin
from decodekit.text import TextAssembler
from decodekit.trace import GenerationResult, StepRecord
from decodekit.verify import verify


@dataclass
class DecodeRequest:
    prompt_ids: list[int]
    max_new_tokens: int = 256
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stop: Sequence[str] = ()
    budget: int = NUM_DRAFT  # the most draft nodes per step

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise UserError("the prompt is empty")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.budget < 1:
            raise UserError(f"--num-draft must be at least 1, got {self.budget}")
        if any(not s for s in self.stop):
            raise UserError("stop strings must not be empty")


def tree_mask(draft: Draft) -> torch.Tensor:
    """[1 + n + a, 1 + n + a] boolean over the root, the n nodes and the a auxiliary tokens: a node may
    attend to itself and its ancestors (0 = root); auxiliary rows are the draft's own aux_mask."""
    n = len(draft) + 1
    total = n + len(draft.aux_tokens)
    mask = torch.zeros(total, total, dtype=torch.bool)
    mask[:n, 0] = True
    for node, parent in enumerate(draft.parents):
        row = node + 1
        mask[row] = mask[parent + 1]
        mask[row, row] = True
    if draft.aux_tokens:
        mask[n:] = draft.aux_mask
    return mask


class Decoding:
    """One request: iterate it for text deltas; `result` holds the GenerationResult once it is exhausted."""

    def __init__(self, model: LoadedModel, request: DecodeRequest, drafter: Drafter | None, method: str) -> None:
        model.check_fits(len(request.prompt_ids), request.max_new_tokens)
        self.model = model
        self.request = request
        self.drafter = drafter
        self.method = method
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        model, request, drafter = self.model, self.request, self.drafter
        backend = model.backend
        sampling = request.sampling
        generator = None
        if not sampling.greedy:
            generator = torch.Generator()
            generator.manual_seed(sampling.seed if sampling.seed is not None else torch.seed())
        prompt = request.prompt_ids
        limit = min(request.max_new_tokens, model.context_length - len(prompt))
        start = time.perf_counter()
        cache = backend.new_cache()
        if len(prompt) > 1:
            prefix = torch.tensor(prompt[:-1])
            backend.forward(prefix, torch.arange(len(prefix)), cache, last=1)
        prefill_seconds = time.perf_counter() - start
        if drafter is not None:
            drafter.reset(prompt, sampling)
        context = list(prompt)
        generated: list[int] = []
        assembler = TextAssembler(model.tokenizer)
        steps: list[StepRecord] = []
        finish = None
        while finish is None:
            tick = time.perf_counter()
            budget = min(request.budget, limit - len(generated) - 1)
            draft = drafter.propose(context, budget) if drafter is not None and budget > 0 else Draft()
            if len(draft) > max(budget, 0):
                raise RuntimeError(f"{self.method}: drafter proposed {len(draft)} nodes over a budget of {budget}")
            drafted = time.perf_counter()
            past = cache.length
            inputs = torch.tensor([context[-1]] + draft.tokens + draft.aux_tokens)
            positions = past + torch.tensor([0] + draft.depths() + draft.aux_depths)
            mask = None if draft.is_chain and not draft.aux_tokens else tree_mask(draft)
            logits = backend.forward(inputs, positions, cache, mask)
            verdict = verify(draft, logits[: len(draft) + 1], sampling, context, generator)
            cache.keep(past, [0] + [node + 1 for node in verdict.accepted])
            verified = time.perf_counter()
            entropy, margin = entropy_and_margin(logits[verdict.rows])
            committed: list[int] = []
            for token in verdict.tokens:
                committed.append(token)
                generated.append(token)
                if token in model.eos_token_ids:
                    finish = "eos"
                    break
                delta = assembler.push(token)
                if request.stop and (cut := _stop_index(assembler.text, delta, request.stop)) is not None:
                    delta = delta[: max(0, cut - (len(assembler.text) - len(delta)))]
                    assembler.text = assembler.text[:cut]
                    finish = "stop"
                if delta:
                    yield delta
                if finish is None and len(generated) >= limit:
                    finish = "length"
                if finish is not None:
                    break
            context.extend(committed)
            if drafter is not None:
                drafter.observe(committed, logits, draft, verdict.accepted)
            steps.append(StepRecord(
                committed=committed, drafted=list(draft.tokens), parents=list(draft.parents),
                accepted=verdict.accepted[: len(committed)], draft_seconds=drafted - tick,
                verify_seconds=verified - drafted, entropy=entropy[: len(committed)],
                margin=margin[: len(committed)],
            ))
        self.result = GenerationResult(
            text=assembler.text, token_ids=generated, finish_reason=finish, method=self.method,
            prompt_tokens=len(prompt), steps=steps, seconds=time.perf_counter() - start,
            prefill_seconds=prefill_seconds,
            draft_forward_passes=getattr(drafter, "forward_passes", 0),
        )

    def run(self) -> GenerationResult:
        for _ in self:
            pass
        assert self.result is not None
        return self.result


def _stop_index(text: str, delta: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string that the latest delta completed begins, if any."""
    window_start = max(0, len(text) - len(delta) - max(len(s) for s in stops) + 1)
    hits = [i for s in stops if (i := text.find(s, window_start)) >= 0]
    return min(hits) if hits else None
