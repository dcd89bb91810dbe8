"""Jacobi decoding (Santilli et al. 2023; the fixed-point iteration that Lookahead decoding, P015, builds on),
here as Lookahead's ablation: the Jacobi window itself is the draft, with no n-gram pool.

Rule: keep W guesses for the next W tokens and verify them as a chain; the same forward gives, at every
guess, the target's prediction of the token after it, which is the next iteration's guess for that
position. After the accepted prefix and the target's own token are committed, the predictions past them
become the new window (W - accepted - 1 of them), topped up to W with the last of them. The first window
repeats the prompt's last token.

Parameters (method option) and defaults: `window` W = 5 (capped by the step's budget).
"""

from __future__ import annotations

import torch

from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.sampling.sampler import Sampler

WINDOW = 5


class JacobiDrafter:
    forward_passes = 0  # model-free: no drafting forwards

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise UserError(f"jacobi: window must be at least 1, got {window}")
        self.window = window
        self.guesses: list[int] = []

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.guesses = [prompt_ids[-1]] * self.window

    def propose(self, context: list[int], budget: int) -> Draft:
        return Draft.chain(self.guesses[:budget])

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        # row 0 predicts depth 1; row 1 + i (node i) predicts depth i + 2. The committed tokens fill depths
        # 1..len(committed), so the rows from len(committed) on predict the new root's depths 1, 2, ...
        predictions = logits[len(committed): 1 + len(draft)].argmax(dim=-1).tolist() if draft.is_chain else []
        filler = predictions[-1] if predictions else committed[-1]
        self.guesses = (predictions + [filler] * self.window)[: self.window]
