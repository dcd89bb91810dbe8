"""What the quality methods' own steps share: committing one chosen token through the state's output
committer, with the same step record as the speculative step."""

from __future__ import annotations

import time

import torch

from decodekit.core.output import Committed
from decodekit.drafting.base import Draft
from decodekit.sampling import uncertainty
from decodekit.speculative.step import DecodeState, token_logprobs
from decodekit.trace import StepRecord


def choose(state: DecodeState, logits: torch.Tensor) -> int:
    """The sampler's choice after the committed text from one row of logits: the argmax of the processed
    row, or a draw from its softmax when sampling."""
    processed = state.sampler.process(logits[:1], [[]])
    if state.sampler.greedy:
        return int(processed.argmax(dim=-1)[0])
    return int(torch.multinomial(processed.softmax(dim=-1)[0], 1, generator=state.generator))


def commit_token(state: DecodeState, logits: torch.Tensor, token: int, started: float, forwarded: float
                 ) -> Committed:
    """Commit `token`, chosen from `logits` (row 0: the distribution after the committed text). The caller
    has put the cache in order; this pushes the token through the output committer, advances the context and
    the sampler, and records the step."""
    chosen = time.perf_counter()
    entropy, spread, margin = uncertainty(logits[:1])
    committed = state.output.push([token])
    tokens = committed.tokens
    logprobs, top = ([], []) if state.request.logprobs is None else token_logprobs(
        state, Draft(), logits[:1], [0], tokens)
    state.context.extend(tokens)
    state.sampler.accept(tokens)
    state.steps.append(StepRecord(
        committed=tokens, draft_seconds=forwarded - started, verify_seconds=chosen - forwarded,
        entropy=entropy, margin=margin, varentropy=spread, logprobs=logprobs, top_logprobs=top))
    return committed
