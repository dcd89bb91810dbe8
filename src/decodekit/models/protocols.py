"""What the decoding loops read of a backend and its caches: every member they use is declared here.

A forward takes new tokens at explicit positions, with an optional tree mask over them (`tree_mask[i, j]`: new
token i may attend to new token j; None is causal), and writes their keys and values into the cache; it
returns float32 logits, one row per new token (or the `last` rows). A backend with `masks_cached = True` (lean,
transformers) also takes, in `forward`, a wide tree mask [n, k + n] whose first k columns say which of the last k
cached positions each new token sees (a drafter whose cache holds the earlier levels of its own tree). A batched forward (`forward_batch`) does
the same for several sequences at once, each in its own cache, with its own positions and mask; caches to be
batched come from one `new_caches` call. In float32 the logits of each sequence equal those of its solo
forward to within the rounding of the batched products (tests/test_batched_forward.py checks 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


class Cache(Protocol):
    """One sequence's keys and values (models/cache.py)."""

    @property
    def length(self) -> int:
        """Cached positions."""

    def truncate(self, length: int) -> None: ...

    def keep(self, start: int, indices: list[int]) -> None: ...

    def fork(self) -> Cache: ...


@dataclass
class SequenceInput:
    """One sequence of a forward: its new tokens, their positions, its cache, its tree mask, the rows kept."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    cache: Cache
    tree_mask: torch.Tensor | None = None
    last: int = 0


class Backend(Protocol):
    name: str  # "transformers", "lean", "lean-q4"
    device: torch.device
    packed_rows: tuple[int, ...]  # row counts its weights are packed for (the cost curve's key names them)

    def new_cache(self) -> Cache: ...

    def new_caches(self, count: int) -> list[Cache]:
        """`count` empty caches that one `forward_batch` can serve together."""

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: Cache,
        tree_mask: torch.Tensor | None = None,
        last: int = 0,
        skip_layers: frozenset[int] | None = None,
        exit_layers: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """With `exit_layers` (lean and transformers backends; DoLa), `(logits, {j: logits of the final norm
        and head on the hidden state after j layers})` from the same forward."""

    def forward_batch(self, sequences: Sequence[SequenceInput]) -> list[torch.Tensor]:
        """Logits of each sequence, as `forward` would give them, from one forward over all."""
