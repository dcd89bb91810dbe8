"""The KV cache: committed positions only, with the two edits that speculative decoding needs.

- `truncate(length)`: forget every position from `length` on (a rejected draft).
- `keep(start, indices)`: of the positions from `start` on, keep those at `start + indices` (in order) and
  move them to `start, start + 1, ...` (an accepted path through a draft tree, which need not be contiguous
  in the tree's layout).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class KVCache(DynamicCache):
    """A transformers `DynamicCache` with truncate and keep, used by the transformers backend."""

    @property
    def length(self) -> int:
        return self.get_seq_length()

    def truncate(self, length: int) -> None:
        if length > self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        for layer in self.layers:
            if layer.is_initialized:
                layer.keys = layer.keys[..., :length, :]
                layer.values = layer.values[..., :length, :]

    def keep(self, start: int, indices: list[int]) -> None:
        if indices == list(range(len(indices))):  # the common case: a prefix of the new positions
            self.truncate(start + len(indices))
            return
        index = torch.tensor([start + i for i in indices], dtype=torch.long)
        for layer in self.layers:
            if layer.is_initialized:
                index = index.to(layer.keys.device)
                layer.keys = torch.cat([layer.keys[..., :start, :], layer.keys.index_select(-2, index)], dim=-2)
                layer.values = torch.cat(
                    [layer.values[..., :start, :], layer.values.index_select(-2, index)], dim=-2
                )
