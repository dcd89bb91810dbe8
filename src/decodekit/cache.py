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


class StaticKVCache:
    """Preallocated keys and values for every layer, used by the lean backend.

    `keys` and `values` are [layers, kv_heads, capacity, head_dim]; positions `0 .. length - 1` are valid.
    `layer_keys[i]` and `layer_values[i]` are layer i's [1, kv_heads, capacity, head_dim] views, the shape
    attention takes. The capacity starts small and doubles when a forward needs more (`reserve`), up to `limit`
    (the model's context), so a short generation never allocates the whole context.
    """

    def __init__(
        self, layers: int, kv_heads: int, head_dim: int, *, limit: int, capacity: int = 1024,
        dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
    ) -> None:
        if capacity < 1 or limit < 1:
            raise ValueError(f"a cache needs a positive capacity and limit, got {capacity} and {limit}")
        self.limit = limit
        self.length = 0
        self._allocate(torch.empty(layers, kv_heads, min(capacity, limit), head_dim, dtype=dtype, device=device))

    def _allocate(self, keys: torch.Tensor, values: torch.Tensor | None = None) -> None:
        self.keys = keys
        self.values = torch.empty_like(keys) if values is None else values
        self.layer_keys = list(self.keys[:, None].unbind(0))
        self.layer_values = list(self.values[:, None].unbind(0))

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def reserve(self, length: int) -> None:
        """Make room for `length` positions, keeping the valid ones."""
        if length <= self.capacity:
            return
        if length > self.limit:
            raise ValueError(f"the cache holds at most {self.limit} positions; {length} were asked for")
        layers, kv_heads, _, head_dim = self.keys.shape
        shape = (layers, kv_heads, min(self.limit, max(length, 2 * self.capacity)), head_dim)
        keys, values = self.keys.new_empty(shape), self.values.new_empty(shape)
        keys[:, :, : self.length] = self.keys[:, :, : self.length]
        values[:, :, : self.length] = self.values[:, :, : self.length]
        self._allocate(keys, values)

    def truncate(self, length: int) -> None:
        if length > self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        self.length = length

    @torch.inference_mode()
    def keep(self, start: int, indices: list[int]) -> None:
        """Keep the new positions `start + i` for i in `indices`, moved to `start`, `start + 1`, ...

        In inference mode: a cache that grew inside the forward holds inference tensors, which can be
        written in place only there.
        """
        if indices == list(range(len(indices))):  # the common case: a prefix of the new positions
            self.truncate(start + len(indices))
            return
        if start + max(indices) >= self.length:
            raise ValueError(f"cannot keep position {start + max(indices)} of a cache of {self.length}")
        index = torch.tensor([start + i for i in indices], dtype=torch.long, device=self.keys.device)
        end = start + len(indices)
        self.keys[:, :, start:end] = self.keys.index_select(2, index)
        self.values[:, :, start:end] = self.values.index_select(2, index)
        self.length = end
