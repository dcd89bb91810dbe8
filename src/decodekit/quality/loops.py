"""What the quality methods' own steps share: committing one chosen token after a root-only forward, through
the state's output committer, with the same step record as the speculative step."""

from __future__ import annotations

import time

import torch

from decodekit.core.output import Committed
from decodekit.sampling import uncertainty
from decodekit.speculative.step import DecodeState, Proposal, token_logprobs
from decodekit.trace import StepRecord


def commit_token(state: DecodeState, proposal: Proposal, logits: torch.Tensor, token: int) -> Committed:
    """Commit `token` after the root, whose forward gave `logits` (row 0 is the root's); the cache keeps the
    root. Like `commit` for a draft-free step, with the method's own choice in place of the verifier's."""
    state.cache.keep(proposal.past, [0])
    chosen = time.perf_counter()
    entropy, spread, margin = uncertainty(logits[:1])
    committed = state.output.push([token])
    tokens = committed.tokens
    logprobs, top = ([], []) if state.request.logprobs is None else token_logprobs(
        state, proposal.draft, logits, [0], tokens)
    state.context.extend(tokens)
    state.sampler.accept(tokens)
    state.steps.append(StepRecord(
        committed=tokens, draft_seconds=proposal.drafted - proposal.started, verify_seconds=chosen - proposal.drafted,
        entropy=entropy, margin=margin, varentropy=spread, logprobs=logprobs, top_logprobs=top))
    return committed
