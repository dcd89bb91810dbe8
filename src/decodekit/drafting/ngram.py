"""An online n-gram model of the running text that drafts a tree, in the spirit of ADED (Liu et al. 2024,
"Adaptive Draft-Verification for Efficient Large Language Model Decoding", P007).

Rule: count every trigram and bigram of the text seen so far (each prompt and every committed token, kept
across the requests of a process, one model per target model), so the counts adapt to what the target
writes. A draft is grown best-first: a node's estimated acceptance probability is its parent's times
count(next | last two tokens) / (total + 1) (the + 1 keeps mass for tokens never seen there), backing off
to the bigram counts at half weight when the last two tokens were never seen together; each node offers at
most `branch` children. The tree takes the best nodes up to the budget, then keeps the number that
maximises expected tokens per second on this machine's cost curve (cost_curve.py).

ADED searches its draft with MCTS to balance exploration and exploitation; this drafter only exploits
(best-first by estimated probability), which is what the greedy verification rewards.

Parameters (method options) and defaults: `branch` = 4 children per node at most, `tree_size` = chosen
from the cost curve (a fixed number skips the measurement), `max_tree` = 64 nodes considered.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

import torch

from decodekit.drafting.base import Draft
from decodekit.drafting.cost_curve import CostCurve
from decodekit.errors import UserError
from decodekit.sampling.sampler import Sampler

BRANCH = 4
MAX_TREE = 64
BACKOFF = 0.5  # weight of a bigram estimate used in place of an unseen trigram context


class NGramCounts:
    """Counts of the next token after each one- and two-token context."""

    def __init__(self) -> None:
        self.next: dict[tuple[int, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._ranked: dict[tuple[int, ...], tuple[list[tuple[int, int]], int]] = {}  # (by count, total)

    def add(self, history: list[int], tokens: list[int]) -> None:
        """Count `tokens` as following `history` (of which only the last two tokens matter)."""
        text = history[-2:] + tokens
        for i in range(len(text) - len(tokens), len(text)):
            for context in ((text[i - 1],) if i >= 1 else None, (text[i - 2], text[i - 1]) if i >= 2 else None):
                if context is not None:
                    self.next[context][text[i]] += 1
                    self._ranked.pop(context, None)

    def _ranking(self, context: tuple[int, ...]) -> tuple[list[tuple[int, int]], int] | None:
        if context not in self.next:
            return None
        if context not in self._ranked:
            counts = self.next[context]
            self._ranked[context] = (sorted(counts.items(), key=lambda item: -item[1]), sum(counts.values()))
        return self._ranked[context]

    def candidates(self, prev2: int | None, prev1: int, branch: int) -> list[tuple[int, float]]:
        """Up to `branch` (token, probability estimate) pairs for what follows prev2, prev1."""
        weight = 1.0
        ranking = self._ranking((prev2, prev1)) if prev2 is not None else None
        if ranking is None:
            ranking, weight = self._ranking((prev1,)), BACKOFF
        if ranking is None:
            return []
        ranked, total = ranking
        return [(token, weight * count / (total + 1)) for token, count in ranked[:branch]]


class NGramDrafter:
    forward_passes = 0  # model-free: no drafting forwards

    def __init__(self, counts: NGramCounts, curve: CostCurve | None = None, tree_size: int | None = None,
                 branch: int = BRANCH, max_tree: int = MAX_TREE) -> None:
        if curve is None and tree_size is None:
            raise ValueError("ngram needs a cost curve or a fixed tree_size")
        if tree_size is not None and tree_size < 1:
            raise UserError(f"ngram: tree_size must be at least 1, got {tree_size}")
        if branch < 1 or max_tree < 1:
            raise UserError(f"ngram: branch and max_tree must be at least 1, got {branch} and {max_tree}")
        self.counts = counts
        self.curve = curve
        self.tree_size = tree_size
        self.branch = branch
        self.max_tree = max(max_tree, tree_size or 0)
        self.history: list[int] = []  # the last two committed tokens

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.counts.add([], prompt_ids)
        self.history = prompt_ids[-2:]

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        self.counts.add(self.history, committed)
        self.history = (self.history + committed)[-2:]

    def propose(self, context: list[int], budget: int) -> Draft:
        limit = min(budget, self.tree_size or self.max_tree)
        prev2 = context[-2] if len(context) > 1 else None
        tokens: list[int] = []
        parents: list[int] = []
        gains: list[float] = []
        heap: list[tuple[float, int, int, int, int | None]] = []  # (-p, serial, parent, token, its prev)
        serial = 0

        def offer(parent: int, prev2: int | None, prev1: int, probability: float) -> None:
            nonlocal serial
            for token, p in self.counts.candidates(prev2, prev1, self.branch):
                heapq.heappush(heap, (-probability * p, serial, parent, token, prev1))
                serial += 1

        offer(-1, prev2, context[-1], 1.0)
        while heap and len(tokens) < limit:
            negative, _, parent, token, prev1 = heapq.heappop(heap)
            node = len(tokens)
            tokens.append(token)
            parents.append(parent)
            gains.append(-negative)
            offer(node, prev1, token, -negative)
        keep = len(tokens) if self.tree_size is not None else self.curve.best_size(gains)
        return Draft(tokens[:keep], parents[:keep])
