"""Lookahead decoding (Fu et al. 2024, "Break the Sequential Dependency of LLM Inference Using Lookahead
Decoding", P015): Jacobi iteration generates n-grams, and verified n-grams become tokens, in one forward.

Rule: the lookahead branch is a 2-D window of N - 1 levels of W guessed tokens (auxiliary tokens: forwarded,
never verified or cached). The guess at level l, column c sits at depth c + l + 1 below the root and sees
the root, level 0's columns up to c and the same column of levels 1..l (the paper's mask), so the last
level's logits give one Jacobi update per column. The n-gram down each column (levels 0..N-2, then the new
token) goes into a pool keyed by its first token (most recent first, at most G per key); the window then
slides by one level. The verification branch is the up to G pool n-grams that start with the root, as a
draft tree sharing their common prefixes, verified like any draft (so the output is lossless).

The window starts as W tokens drawn from the prompt (a fixed seed, so runs repeat) and grows one level per
step until it has N - 1 levels. When another drafter's draft was forwarded (`auto`), the window waits.

Parameters (method options) and defaults: `window` W = 5, `ngram` N = 4, `guesses` G = 4. Spec-Bench used
W = 7, N = 5, G = 7 on a GPU, where the 28 extra tokens of the window and the 28 draft nodes cost little;
on a small CPU every extra token costs (see cost_curve.py), so the defaults carry 15 window tokens and at
most 12 draft nodes (also capped by the step's budget).
"""

from __future__ import annotations

import random

import torch

from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.sampling.sampler import Sampler

WINDOW = 5
NGRAM = 4
GUESSES = 4


def guess_trie(guesses: list[tuple[int, ...]], budget: int) -> tuple[list[int], list[int]]:
    """Tokens and parents of the tree that merges the guesses' common prefixes, at most `budget` nodes
    (the guesses in order; the last one may be cut short)."""
    tokens: list[int] = []
    parents: list[int] = []
    children: dict[tuple[int, int], int] = {}  # (parent node, token) -> node
    for guess in guesses:
        node = -1
        for token in guess:
            child = children.get((node, token))
            if child is None:
                if len(tokens) == budget:
                    return tokens, parents
                child = len(tokens)
                children[(node, token)] = child
                tokens.append(token)
                parents.append(node)
            node = child
    return tokens, parents


class LookaheadDrafter:
    forward_passes = 0  # model-free: no drafting forwards

    def __init__(self, window: int = WINDOW, ngram: int = NGRAM, guesses: int = GUESSES) -> None:
        if window < 1:
            raise UserError(f"lookahead: window must be at least 1, got {window}")
        if ngram < 2:
            raise UserError(f"lookahead: ngram must be at least 2, got {ngram}")
        if guesses < 1:
            raise UserError(f"lookahead: guesses must be at least 1, got {guesses}")
        self.window = window
        self.ngram = ngram
        self.guesses = guesses
        self.levels: list[list[int]] = []
        self.pool: dict[int, list[tuple[int, ...]]] = {}
        self.draft: Draft | None = None
        self._window_masks: dict[int, torch.Tensor] = {}

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        rng = random.Random(0)
        self.levels = [[rng.choice(prompt_ids) for _ in range(self.window)]]
        self.pool = {}
        self.draft = None

    def window_mask(self, levels: int) -> torch.Tensor:
        """[levels * W, levels * W]: which window tokens each window token sees (row l * W + c)."""
        if levels not in self._window_masks:
            w = self.window
            mask = torch.zeros(levels * w, levels * w, dtype=torch.bool)
            for level in range(levels):
                for column in range(w):
                    row = level * w + column
                    mask[row, :column + 1] = True
                    for above in range(1, level + 1):
                        mask[row, above * w + column] = True
            self._window_masks[levels] = mask
        return self._window_masks[levels]

    def propose(self, context: list[int], budget: int) -> Draft:
        tokens, parents = guess_trie(self.pool.get(context[-1], [])[: self.guesses], budget)
        n, w = len(tokens), self.window
        aux = [token for level in self.levels for token in level]
        depths = [column + level + 1 for level in range(len(self.levels)) for column in range(w)]
        mask = torch.zeros(len(aux), 1 + n + len(aux), dtype=torch.bool)
        mask[:, 0] = True
        mask[:, 1 + n:] = self.window_mask(len(self.levels))
        self.draft = Draft(tokens, parents, aux_tokens=aux, aux_depths=depths, aux_mask=mask)
        return self.draft

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        if draft is not self.draft:  # another drafter's step: the window has no new logits
            return
        fresh = logits[-self.window:].argmax(dim=-1).tolist()  # the last level's Jacobi update
        if len(self.levels) < self.ngram - 1:
            self.levels.append(fresh)
            return
        for column in range(self.window):
            gram = tuple(level[column] for level in self.levels) + (fresh[column],)
            self.remember(gram)
        self.levels = self.levels[1:] + [fresh]

    def remember(self, gram: tuple[int, ...]) -> None:
        """Put an n-gram first in its key's list (moving it there if present), keeping the G most recent."""
        entries = self.pool.setdefault(gram[0], [])
        continuation = gram[1:]
        if continuation in entries:
            entries.remove(continuation)
        entries.insert(0, continuation)
        del entries[self.guesses:]
