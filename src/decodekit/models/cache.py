"""KV caches: committed positions only, with the edits that speculative decoding needs, one sequence per cache.

- `truncate(length)`: forget every position from `length` on (a rejected draft).
- `keep(start, indices)`: of the positions from `start` on, keep those at `start + indices` (in order) and
  move them to `start, start + 1, ...` (an accepted path through a draft tree, which need not be contiguous
  in the tree's layout).
- `fork()`: an independent copy of the sequence so far (a lookahead rollout), in the same store when it has one.

`KVCache` wraps a transformers `DynamicCache` (the transformers backend). `SlotCache` is one slot of a
`KVSlots` store, preallocated for several sequences at once (the lean backend): each slot has its own length,
and a batched forward over slots of one store reads and writes them all in place.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class KVCache(DynamicCache):
    """A transformers `DynamicCache` with truncate, keep and fork, used by the transformers backend."""

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

    def fork(self) -> KVCache:
        twin = KVCache()
        for index, layer in enumerate(self.layers):
            if layer.is_initialized:
                twin.update(layer.keys.clone(), layer.values.clone(), index)
        return twin


class KVSlots:
    """Preallocated keys and values for every layer and `slots` sequences.

    `keys` and `values` are [layers, slots, kv_heads, capacity, head_dim]. The capacity starts small and
    doubles when a forward needs more (`reserve`), up to `limit` (the model's context), so a short generation
    never allocates the whole context; the number of slots grows when every slot is taken and one more is
    asked for (`acquire`).

    Storage is zero-filled, never left uninitialised: a batched forward reads every slot up to the longest
    sequence, and a NaN or infinity left in memory at a masked position still poisons the attention (its
    weight is 0, but 0 times NaN is NaN), which turned whole outputs into token 0 now and then.
    """

    def __init__(
        self, layers: int, kv_heads: int, head_dim: int, *, limit: int, capacity: int = 1024, slots: int = 1,
        dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
    ) -> None:
        if capacity < 1 or limit < 1 or slots < 1:
            raise ValueError(f"a cache needs a positive capacity, limit and slot count, got {capacity}, {limit}, "
                             f"{slots}")
        self.limit = limit
        self.lengths = [0] * slots
        self.taken = [False] * slots
        self._allocate(torch.zeros(layers, slots, kv_heads, min(capacity, limit), head_dim, dtype=dtype,
                                   device=device))

    def _allocate(self, keys: torch.Tensor, values: torch.Tensor | None = None) -> None:
        self.keys = keys
        self.values = torch.zeros_like(keys) if values is None else values
        self._views: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    @property
    def slots(self) -> int:
        return self.keys.shape[1]

    def views(self, slot: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer, the slot's [1, kv_heads, capacity, head_dim] keys and values (the shape attention takes)."""
        if slot not in self._views:
            self._views[slot] = (list(self.keys[:, slot : slot + 1].unbind(0)),
                                 list(self.values[:, slot : slot + 1].unbind(0)))
        return self._views[slot]

    def reserve(self, length: int) -> None:
        """Make room for `length` positions in every slot, keeping the valid ones."""
        if length <= self.capacity:
            return
        if length > self.limit:
            raise ValueError(f"the cache holds at most {self.limit} positions; {length} were asked for")
        self._grow(self.slots, min(self.limit, max(length, 2 * self.capacity)))

    def _grow(self, slots: int, capacity: int) -> None:
        layers, old_slots, kv_heads, _, head_dim = self.keys.shape
        shape = (layers, slots, kv_heads, capacity, head_dim)
        keys, values = self.keys.new_zeros(shape), self.values.new_zeros(shape)
        held = max(self.lengths, default=0)
        keys[:, :old_slots, :, :held] = self.keys[:, :, :, :held]
        values[:, :old_slots, :, :held] = self.values[:, :, :, :held]
        self._allocate(keys, values)

    def acquire(self) -> SlotCache:
        """A free slot, emptied (a new one when all are taken)."""
        if all(self.taken):
            self._grow(self.slots + 1, self.capacity)
            self.lengths.append(0)
            self.taken.append(False)
        slot = self.taken.index(False)
        self.taken[slot] = True
        self.lengths[slot] = 0
        return SlotCache(self, slot)

    def release(self, slot: int) -> None:
        self.taken[slot] = False
        self.lengths[slot] = 0


class SlotCache:
    """One sequence's view of a `KVSlots` store: what the lean backend's forward reads and writes."""

    def __init__(self, store: KVSlots, slot: int) -> None:
        self.store = store
        self.slot = slot

    @property
    def length(self) -> int:
        return self.store.lengths[self.slot]

    @length.setter
    def length(self, value: int) -> None:
        self.store.lengths[self.slot] = value

    @property
    def limit(self) -> int:
        return self.store.limit

    @property
    def capacity(self) -> int:
        return self.store.capacity

    @property
    def keys(self) -> torch.Tensor:
        """[layers, kv_heads, capacity, head_dim]: this slot's keys."""
        return self.store.keys[:, self.slot]

    @property
    def values(self) -> torch.Tensor:
        return self.store.values[:, self.slot]

    @property
    def layer_keys(self) -> list[torch.Tensor]:
        return self.store.views(self.slot)[0]

    @property
    def layer_values(self) -> list[torch.Tensor]:
        return self.store.views(self.slot)[1]

    def reserve(self, length: int) -> None:
        self.store.reserve(length)

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
        keys, values = self.keys, self.values
        index = torch.tensor([start + i for i in indices], dtype=torch.long, device=keys.device)
        end = start + len(indices)
        keys[:, :, start:end] = keys.index_select(2, index)
        values[:, :, start:end] = values.index_select(2, index)
        self.length = end

    @torch.inference_mode()
    def fork(self) -> SlotCache:
        twin = self.store.acquire()
        length = self.length
        twin.keys[:, :, :length] = self.keys[:, :, :length]
        twin.values[:, :, :length] = self.values[:, :, :length]
        twin.length = length
        return twin

    def release(self) -> None:
        """Give the slot back to the store (the cache must not be used afterwards)."""
        self.store.release(self.slot)
