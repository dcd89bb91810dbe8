"""The sampler of one request: its processor chain, and the one place where logits become the target's choice.

Chain order: the repetition penalty, then the request's own processors (grammar constraints, a method's
contrastive adjustment, ...) in the order given, then, when sampling, the warpers (temperature and filters).
Greedy decoding is the argmax of the processed logits; sampling draws from their softmax. Verification of a
draft, plain decoding and a draft model's q all go through `process`, so the processed distribution is the
target that lossless methods reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.sampling.config import SamplingConfig
from decodekit.sampling.processors import LogitsProcessor, RepetitionPenalty, Warpers


class Sampler:
    def __init__(self, config: SamplingConfig | None = None, processors: Sequence[LogitsProcessor] = ()) -> None:
        self.config = config or SamplingConfig()
        chain: list[LogitsProcessor] = []
        if self.config.repetition_penalty != 1.0:
            chain.append(RepetitionPenalty(self.config.repetition_penalty))
        chain.extend(processors)
        if not self.config.greedy:
            chain.append(Warpers(self.config))
        self.chain = chain

    @property
    def greedy(self) -> bool:
        return self.config.greedy

    @property
    def seed(self) -> int | None:
        return self.config.seed

    @property
    def constrains(self) -> bool:
        """Whether some processor of the chain may forbid tokens (then drafts are pruned before a forward)."""
        return any(processor.constrains for processor in self.chain)

    def reset(self, prompt_ids: Sequence[int]) -> None:
        for processor in self.chain:
            processor.reset(prompt_ids)

    def accept(self, tokens: Sequence[int]) -> None:
        for processor in self.chain:
            processor.accept(tokens)

    def process(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """The processed logits of each row (row r after the committed text + `paths[r]`)."""
        if len(paths) != logits.shape[0]:
            raise ValueError(f"{logits.shape[0]} logits rows but {len(paths)} paths")
        for processor in self.chain:
            logits = processor.process(logits, paths)
        return logits

    def probs(self, logits: torch.Tensor, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """The distribution plain sampling draws from at each row."""
        return self.process(logits, paths).softmax(dim=-1)

    def allows(self, path: Sequence[int], token: int) -> bool:
        return all(processor.allows(path, token) for processor in self.chain)

    def continuation(self, limit: int) -> list[int]:
        """At most `limit` tokens that the chain's constraints propose after the committed text (the longest
        proposal of any processor; the others' `allows` still apply through pruning)."""
        best: list[int] = []
        for processor in self.chain:
            propose = getattr(processor, "continuation", None)
            if propose is not None and processor.constrains and len(chain := propose(limit)) > len(best):
                best = chain[:limit]
        return best

    def satisfied(self) -> bool | None:
        """Whether every constraint that has a say accepts the committed text as complete (None: none has)."""
        verdicts = [v for p in self.chain if (v := getattr(p, "satisfied", lambda: None)()) is not None]
        return all(verdicts) if verdicts else None

    def clone(self) -> Sampler:
        twin = Sampler.__new__(Sampler)
        twin.config = self.config
        twin.chain = [processor.clone() for processor in self.chain]
        return twin

