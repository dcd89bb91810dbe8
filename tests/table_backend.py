"""A backend served from a table of a tiny model's logits: every context is computed once and memoised, so the
chi-square exactness tests can run the real loop, verifier and cache edits thousands of times in seconds."""

from __future__ import annotations

import torch


class TableBackend:
    """The tiny model's logits for every context, computed once per context and memoised."""

    name = "table"
    packed_rows: tuple[int, ...] = ()
    masks_cached = True  # a wide mask [n, k + n] also covers the last k cached tokens

    def __init__(self, model):
        self.model = model
        self.memo: dict[tuple[int, ...], torch.Tensor] = {}
        self.q_memo: dict[tuple[int, ...], torch.Tensor] = {}  # a drafter's warped q (one sampling config)

    def logits(self, context: tuple[int, ...]) -> torch.Tensor:
        if context not in self.memo:
            with torch.inference_mode():
                self.memo[context] = self.model(torch.tensor([context])).logits[0, -1].float()
        return self.memo[context]

    def new_cache(self):
        return TokenCache()

    def forward(self, input_ids, positions, cache, tree_mask=None, last=0):
        new = input_ids.tolist()
        if tree_mask is None:
            tree_mask = torch.ones(len(new), len(new), dtype=torch.bool).tril()
        cached = tree_mask.shape[1] - len(new)
        past = len(cache.tokens)
        visible = cache.tokens[past - cached :] + new
        rows = []
        for i in range(len(new)):
            context = tuple(cache.tokens[: past - cached]) + tuple(
                visible[j] for j in range(len(visible)) if tree_mask[i, j])
            rows.append(self.logits(context))
        cache.tokens.extend(new)
        out = torch.stack(rows)
        return out[-last:] if last else out


class TokenCache:
    """The committed tokens stand in for keys and values."""

    def __init__(self):
        self.tokens: list[int] = []

    @property
    def length(self):
        return len(self.tokens)

    def truncate(self, length):
        del self.tokens[length:]

    def keep(self, start, indices):
        self.tokens[start:] = [self.tokens[start + i] for i in indices]
