"""Stateful logits processors: the one hook through which penalties, warpers, grammars and contrastive
adjustments change the target's distribution (llama.cpp's sampler chain, with HF's composability).

A processor lives for one request. Its state is the *committed* text: `reset(prompt_ids)` starts it,
`accept(tokens)` advances it by tokens the engine committed. `process(logits, paths)` changes a set of rows at
once without changing that state: row r's history is the committed text followed by `paths[r]` (for a draft
tree, the tokens from the root down to that row's node; [] for the root). Because processing never advances
the state, a rejected draft needs no rollback; `clone()` gives an independent copy that may accept
hypothetical tokens (lookahead rollouts). `allows(path, token)` says whether `token` may follow the committed
text + `path` at all, so that a draft can be pruned before the forward (a grammar); processors that only
reweight allow everything.

The same chain is applied wherever logits become a choice: plain sampling, greedy verification, exact
speculative sampling, and a draft model's q (`Sampler`, sampler.py), so any processor composes exactly with
every drafter.

Optional, for constraints: `continuation(limit)` gives tokens the processor proposes after the committed text
(a grammar's forced tokens; the engine puts them at the front of the draft, where verification checks them),
`satisfied()` whether the committed text is complete for it (None when it has no say), and a processor that
must see the model first (a grammar needs its tokenizer) is a factory with `bind(model)`, which gives each
request its own processor (`for_model`).

Processors here: the repetition penalty (CTRL, Keskar et al. 2019: a seen token's logit is divided by the
penalty when positive, multiplied when negative) and the sampling warpers (warpers.py: temperature, top-k,
top-p, min-p, typical-p, epsilon and eta cutoffs, in transformers' order).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from decodekit.sampling.config import SamplingConfig
from decodekit.sampling.warpers import warp


@runtime_checkable
class LogitsProcessor(Protocol):
    """What the engine calls on every processor of a request's chain."""

    constrains: bool  # whether `allows` can ever say False (then drafts are pruned before the forward)

    def reset(self, prompt_ids: Sequence[int]) -> None:
        """Start a request whose committed text is `prompt_ids`."""

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """`logits` [rows, vocab] float32 -> processed logits of the same shape (a new tensor or `logits`
        itself; never edit the input in place). Row r follows the committed text + `paths[r]`."""

    def allows(self, path: Sequence[int], token: int) -> bool:
        """Whether `token` may follow the committed text + `path` (False only for hard constraints)."""

    def accept(self, tokens: Sequence[int]) -> None:
        """The engine committed `tokens` after the committed text."""

    def clone(self) -> LogitsProcessor:
        """An independent copy with the same committed state."""


class Processor:
    """Defaults for processors that only reweight: allow every token, clone by copying."""

    constrains = False

    def reset(self, prompt_ids: Sequence[int]) -> None:
        pass

    def allows(self, path: Sequence[int], token: int) -> bool:
        return True

    def accept(self, tokens: Sequence[int]) -> None:
        pass

    def clone(self) -> LogitsProcessor:
        return copy.deepcopy(self)

    def continuation(self, limit: int) -> list[int]:
        return []

    def satisfied(self) -> bool | None:
        return None


def for_model(processor, model) -> LogitsProcessor:
    """The request's own processor: `processor.bind(model)` for a factory, else `processor` itself."""
    bind = getattr(processor, "bind", None)
    return processor if bind is None else bind(model)


class RepetitionPenalty(Processor):
    """Penalise every token seen in a row's history (the prompt, the committed output and the row's path)."""

    def __init__(self, penalty: float) -> None:
        self.penalty = penalty
        self.seen: set[int] = set()

    def reset(self, prompt_ids: Sequence[int]) -> None:
        self.seen = set(prompt_ids)

    def accept(self, tokens: Sequence[int]) -> None:
        self.seen.update(tokens)

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        return apply_repetition_penalty(logits, self.penalty, [self.seen.union(path) for path in paths])


class Warpers(Processor):
    """Temperature and the filters of `SamplingConfig`, row by row (stateless)."""

    def __init__(self, config: SamplingConfig) -> None:
        self.config = config

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        return warp(logits, self.config)


def apply_repetition_penalty(logits: torch.Tensor, penalty: float, seen: Sequence[set[int] | Sequence[int]]
                             ) -> torch.Tensor:
    """Row r penalises the tokens in `seen[r]`."""
    if penalty == 1.0:
        return logits
    logits = logits.clone()
    for row, tokens in enumerate(seen):
        if not tokens:
            continue
        index = torch.tensor(sorted(set(tokens)), dtype=torch.long, device=logits.device)
        values = logits[row, index]
        logits[row, index] = torch.where(values < 0, values * penalty, values / penalty)
    return logits
