"""The step that every autoregressive method shares, as functions of an explicit per-request state.

    state = prefill(model, request, decoder)             # cache the prompt but its last token (the root)
    step(state):
        draft   = drafter.propose(context, budget)      # a tree below the root
        draft   = prune(graft(draft, sampler.continuation(budget)))  # a constraint's forced tokens, its pruning
        logits  = forward([root] + draft, tree mask)        # one target forward
        verdict = verify(draft, logits, sampler)            # greedy or exact speculative sampling
        cache.keep(root + accepted path); sampler.accept(tokens); drafter.observe(...)
        output.push(tokens)                                 # EOS, stop strings, text deltas, length

`step` is `commit(state, proposal, forward(proposal))` with `proposal = propose(state)`; a caller that serves
several requests (`step_together`, a server's scheduler) proposes for each, runs one batched forward over all
of them (`Backend.forward_batch`) and commits each. A request's tokens do not depend on what else shares the
forward, beyond the rounding of batched kernels (models/protocols.py says how far).

The root (the last committed token) is not yet in the KV cache when a step starts: it is forwarded with the
draft, and its logits row gives the distribution of the draft's first token.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from decodekit.core import DecodeRequest, OutputCommitter
from decodekit.core.output import Committed
from decodekit.drafting.base import Draft, Drafter
from decodekit.models.loaded import LoadedModel
from decodekit.models.protocols import Cache, SequenceInput
from decodekit.sampling import Sampler, for_model, uncertainty
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.tree import graft, prune, row_paths, tree_mask
from decodekit.speculative.verify import verify
from decodekit.trace import GenerationResult, StepRecord


@dataclass
class DecodeState:
    """Everything one request's decoding carries from step to step."""

    model: LoadedModel
    request: DecodeRequest
    method: str
    drafter: Drafter | None
    sampler: Sampler
    generator: torch.Generator | None
    cache: Cache
    output: OutputCommitter
    context: list[int]  # prompt + committed output; its last token is the root
    start: float
    prefill_seconds: float
    steps: list[StepRecord] = field(default_factory=list)
    loop: Any = None  # the method's own step (Decoder.make_loop), called instead of the speculative step

    @property
    def finished(self) -> bool:
        return self.output.finish is not None


@dataclass
class Proposal:
    """One step's draft and the forward it needs."""

    draft: Draft
    past: int  # cache length before the forward
    forward: SequenceInput
    started: float
    drafted: float  # when drafting ended
    chain: list[int] = field(default_factory=list)  # the constraints' proposal grafted into the draft


def prefill(model: LoadedModel, request: DecodeRequest, decoder: Decoder, method: str,
            cache: Cache | None = None) -> DecodeState:
    """Start a request: its sampler and drafter reset, its prompt (but the root) forwarded into `cache` (a
    fresh one of the model's backend when None)."""
    model.check_fits(len(request.prompt_ids), request.max_new_tokens)
    sampling = request.sampling
    generator = None
    if not sampling.greedy:
        generator = torch.Generator()
        generator.manual_seed(sampling.seed if sampling.seed is not None else torch.seed())
    prompt = list(request.prompt_ids)
    start = time.perf_counter()
    cache = model.backend.new_cache() if cache is None else cache
    if len(prompt) > 1:
        prefix = torch.tensor(prompt[:-1])
        model.backend.forward(prefix, torch.arange(len(prefix)), cache, last=1)
    prefill_seconds = time.perf_counter() - start
    sampler = Sampler(sampling, [*decoder.make_processors(), *(for_model(p, model) for p in request.processors)])
    sampler.reset(prompt)
    if decoder.drafter is not None:
        decoder.drafter.reset(prompt, sampler)
    limit = min(request.max_new_tokens, model.context_length - len(prompt))
    output = OutputCommitter(model.tokenizer, model.eos_token_ids, request.stop, limit)
    loop = decoder.make_loop() if decoder.make_loop is not None else None
    return DecodeState(model, request, method, decoder.drafter, sampler, generator, cache, output, prompt, start,
                       prefill_seconds, loop=loop)


def propose(state: DecodeState, limit: int | None = None) -> Proposal:
    """The step's draft tree (at most `limit` nodes, when given) and the forward that verifies it."""
    tick = time.perf_counter()
    budget = min(state.request.num_draft, state.output.room - 1)
    if limit is not None:
        budget = min(budget, limit)
    drafter = state.drafter
    draft = drafter.propose(state.context, budget) if drafter is not None and budget > 0 else Draft()
    if len(draft) > max(budget, 0):
        raise RuntimeError(f"{state.method}: drafter proposed {len(draft)} nodes over a budget of {budget}")
    chain = state.sampler.continuation(budget) if state.sampler.constrains and budget > 0 else []
    draft = prune(graft(draft, chain), state.sampler)
    past = state.cache.length
    inputs = torch.tensor([state.context[-1]] + draft.tokens + draft.aux_tokens)
    positions = past + torch.tensor([0] + draft.depths() + draft.aux_depths)
    mask = None if draft.is_chain and not draft.aux_tokens else tree_mask(draft)
    return Proposal(draft, past, SequenceInput(inputs, positions, state.cache, mask), tick, time.perf_counter(),
                    chain)


def commit(state: DecodeState, proposal: Proposal, logits: torch.Tensor) -> Committed:
    """Verify the proposal against its logits and commit what was accepted."""
    draft = proposal.draft
    verdict = verify(draft, logits[: len(draft) + 1], state.sampler, state.generator)
    state.cache.keep(proposal.past, [0] + [node + 1 for node in verdict.accepted])
    verified = time.perf_counter()
    entropy, spread, margin = uncertainty(logits[verdict.rows])
    committed = state.output.push(verdict.tokens)
    tokens = committed.tokens
    logprobs, top = ([], []) if state.request.logprobs is None else token_logprobs(state, draft, logits,
                                                                                    verdict.rows, tokens)
    state.context.extend(tokens)
    state.sampler.accept(tokens)
    if state.drafter is not None:
        state.drafter.observe(tokens, logits, draft, verdict.accepted)
    state.steps.append(StepRecord(
        committed=tokens, drafted=list(draft.tokens), parents=list(draft.parents),
        accepted=verdict.accepted[: len(tokens)], draft_seconds=proposal.drafted - proposal.started,
        verify_seconds=verified - proposal.drafted, entropy=entropy[: len(tokens)], margin=margin[: len(tokens)],
        varentropy=spread[: len(tokens)],
        logprobs=logprobs, top_logprobs=top,
        forced=_on_chain([draft.tokens[n] for n in verdict.accepted[: len(tokens)]], proposal.chain),
    ))
    return committed


def token_logprobs(state: DecodeState, draft: Draft, logits: torch.Tensor, rows: list[int], tokens: list[int]
                   ) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """Each committed token's log-probability under the processed distribution of the row it was chosen from
    (what greedy takes the argmax of and sampling draws from), and that row's top `request.logprobs` tokens.
    Called before the sampler accepts the tokens, so the processors see the state the verification saw."""
    paths = row_paths(draft)
    rows = rows[: len(tokens)]
    scores = state.sampler.process(logits[rows], [paths[r] for r in rows]).float().log_softmax(dim=-1)
    chosen = scores[torch.arange(len(rows)), torch.tensor(tokens)].tolist()
    k = state.request.logprobs or 0
    if k == 0:
        return chosen, [[] for _ in rows]
    values, indices = scores.topk(k, dim=-1)
    return chosen, [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]


def step(state: DecodeState) -> Committed:
    """One step of one request: propose, one target forward, verify, commit (or the method's own step)."""
    if state.loop is not None:
        return state.loop(state)
    proposal = propose(state)
    item = proposal.forward
    logits = state.model.backend.forward(item.input_ids, item.positions, item.cache, item.tree_mask)
    return commit(state, proposal, logits)


def step_together(states: Sequence[DecodeState], draft_limits: Sequence[int | None] | None = None
                  ) -> list[Committed]:
    """One step of each unfinished request of one model, with one batched target forward over all of them,
    state i drafting at most `draft_limits[i]` nodes where that is not None. Their caches must come from one
    `Backend.new_caches` call."""
    if not states:
        return []
    backend = states[0].model.backend
    if any(s.model.backend is not backend for s in states):
        raise ValueError("requests stepped together must share one model")
    limits = dict(zip(map(id, states), draft_limits)) if draft_limits is not None else {}
    together = [state for state in states if state.loop is None]  # a method's own step runs alone
    proposals = [propose(state, limits.get(id(state))) for state in together]
    logits = backend.forward_batch([p.forward for p in proposals]) if proposals else []
    done = {id(state): commit(state, proposal, rows) for state, proposal, rows in zip(together, proposals, logits)}
    return [done[id(state)] if id(state) in done else step(state) for state in states]


def _on_chain(accepted: list[int], chain: list[int]) -> int:
    """How many of the accepted draft tokens lead along the constraints' proposal."""
    count = 0
    for token, proposed in zip(accepted, chain):
        if token != proposed:
            break
        count += 1
    return count


def result(state: DecodeState) -> GenerationResult:
    drafter = state.drafter
    complete = state.sampler.satisfied()  # a stop string cuts the text the constraints saw: not complete
    return GenerationResult(
        text=state.output.text, token_ids=list(state.output.token_ids), finish_reason=state.output.finish,
        method=state.method, prompt_tokens=len(state.request.prompt_ids), steps=state.steps,
        seconds=time.perf_counter() - state.start, prefill_seconds=state.prefill_seconds,
        draft_forward_passes=drafter.forward_passes if drafter is not None else 0,
        complete=None if complete is None else complete and state.output.finish != "stop",
        quality=quality_counters(state),
    )


def quality_counters(state: DecodeState) -> dict[str, float]:
    """What the request's processors and the method's own step count (their `quality()`), merged."""
    counters: dict[str, float] = {}
    for part in [*state.sampler.chain, state.loop]:
        report = getattr(part, "quality", None)
        if callable(report):
            counters.update(report())
    return counters
