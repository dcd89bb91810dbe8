"""SAM-Decoding's hybrid (Hu et al. 2024, "SAM Decoding: Speculative Decoding via Suffix Automaton", P205,
the SAM + Token Recycling configuration): copy a long match, else fall back to recycled candidates.

Rule: when the suffix automata (over prompt + output, and over a corpus when given) match at least
`threshold` tokens of the text's end, the draft is the chain that followed the match (`sam`); otherwise it
is Token Recycling's tree (`recycle`). Both learn from every step whichever drafted it: the automaton takes
the committed tokens, the adjacency matrix the step's logits.

Parameters (method options) and defaults: `threshold` = 5 (the paper's `len_threshold`), `corpus` (as for
`sam`), and `recycle`'s `topk`, `tree_size`, `max_tree`, `matrix_file`.
"""

from __future__ import annotations

import torch

from decodekit.drafting.base import Draft
from decodekit.drafting.suffix_automaton import SuffixAutomatonDrafter
from decodekit.drafting.token_recycling import RecycleDrafter
from decodekit.errors import UserError
from decodekit.sampling.sampler import Sampler

THRESHOLD = 5


class HybridDrafter:
    forward_passes = 0  # model-free: no drafting forwards

    def __init__(self, sam: SuffixAutomatonDrafter, recycle: RecycleDrafter, threshold: int = THRESHOLD) -> None:
        if threshold < 1:
            raise UserError(f"hybrid: threshold must be at least 1, got {threshold}")
        self.sam = sam
        self.recycle = recycle
        self.threshold = threshold

    def longest_match(self) -> int:
        """The longest suffix of the text matched by either automaton."""
        length = self.sam.dynamic.match()[1]
        if self.sam.static is not None:
            length = max(length, self.sam.static_match[1])
        return length

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.sam.reset(prompt_ids, sampler)
        self.recycle.reset(prompt_ids, sampler)

    def propose(self, context: list[int], budget: int) -> Draft:
        if self.longest_match() >= self.threshold:
            draft = self.sam.propose(context, budget)
            if len(draft):
                return draft
        return self.recycle.propose(context, budget)

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        self.sam.observe(committed, logits, draft, accepted)
        self.recycle.observe(committed, logits, draft, accepted)
