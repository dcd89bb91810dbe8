"""Logits for the canvas: a full forward, or Fast-dLLM's approximate block-wise KV caches.

Fast-dLLM (arXiv 2505.22618, Sec. 3.2). At the start of a block (here: whenever the window of current
blocks changes) one full forward decodes that step and keeps every position's keys and values; the
block's later steps reuse them:
- ``prefix``: keys/values of the positions before the block are reused; the block and everything after it
  are recomputed each step.
- ``dual``: the positions after the block (still masks) are reused too; only the block is recomputed.
The reused entries are stale (computed while the block was masked): the cache is approximate and is
refreshed at the next block. Attention is bidirectional and RoPE is applied before caching, so the
cached positions can sit in any order in the cache as long as the padding mask follows the same order.
With a logits shift s (Dream), the logits of positions [a, b) come from hidden states [a - s, b - s),
so the recomputed window also holds position a - s.
With a batch, the window spans every active row's current block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.diffusion.adapters import DiffusionModel
from decodekit.errors import UserError

CACHE_MODES = ("none", "prefix", "dual")


def align(raw: torch.Tensor, shift: int) -> torch.Tensor:
    """Logits aligned with the input positions (Dream's shift: position i reads hidden state i - 1)."""
    if shift == 0:
        return raw
    return torch.cat([raw[:, :shift], raw[:, :-shift]], dim=1)


def full_logits(model: DiffusionModel, ids, attention, positions, prompt_width: int) -> torch.Tensor:
    raw, _ = model.forward(ids, attention, positions)
    return align(raw, model.shift)[:, prompt_width:]


@dataclass
class BlockCache:
    """The keys/values of the last refresh and the window [lo, hi) (canvas positions) they were kept for."""

    mode: str
    lo: int = -1
    hi: int = -1
    keys: list | None = None
    values: list | None = None
    cached_index: torch.Tensor | None = None  # canvas positions held in the cache, in cache order
    fed_index: torch.Tensor | None = None  # canvas positions recomputed each step

    def __post_init__(self):
        if self.mode not in CACHE_MODES:
            raise UserError(f"unknown cache {self.mode!r}; choose one of {', '.join(CACHE_MODES)}")

    def logits(self, model: DiffusionModel, ids, attention, positions, prompt_width: int, lo: int, hi: int):
        """Logits [B, G, V] of the generated region; with a cache only [lo, hi) (prefix: [lo, end)) are
        fresh and the rest are zeros (the loop only reads the window). Returns (logits, refreshed)."""
        if self.mode == "none":
            return full_logits(model, ids, attention, positions, prompt_width), True
        if not model.supports_cache:
            raise UserError(f"{model.name}: no KV cache for this model; use cache=none")
        n = ids.shape[1]
        if self.mode == "prefix":
            hi = n
        if (lo, hi) != (self.lo, self.hi):
            return self._refresh(model, ids, attention, positions, prompt_width, lo, hi), True
        cache = self._cache()
        fed = self.fed_index
        mask = torch.cat([attention[:, self.cached_index], attention[:, fed]], dim=1)
        raw, _ = model.forward(ids[:, fed], mask, positions[:, fed], past=cache)
        out = torch.zeros(ids.shape[0], n, raw.shape[-1], dtype=raw.dtype)
        out[:, lo:hi] = raw[:, : hi - lo]  # fed position lo - s + j predicts canvas position lo + j
        return out[:, prompt_width:], False

    def _refresh(self, model, ids, attention, positions, prompt_width, lo, hi):
        from transformers import DynamicCache

        n = ids.shape[1]
        s = model.shift
        raw, past = model.forward(ids, attention, positions, past=DynamicCache())
        a, b = lo - s, hi  # the block's tokens and, with a shift, the hidden state before it
        self.fed_index = torch.arange(a, b)
        self.cached_index = torch.cat([torch.arange(0, a), torch.arange(b, n)])
        self.keys, self.values = [], []
        for layer in past.layers:
            self.keys.append(layer.keys[:, :, self.cached_index].contiguous())
            self.values.append(layer.values[:, :, self.cached_index].contiguous())
        self.lo, self.hi = lo, hi
        return align(raw, s)[:, prompt_width:]

    def _cache(self):
        from transformers import DynamicCache

        cache = DynamicCache()
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            cache.update(k, v, i)
        return cache
