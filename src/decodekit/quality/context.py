"""A second forward kept in step with the committed text: another model (Contrastive Decoding's amateur, EAD's
idle model) or the same model on another prompt (USCD's lame prompt), each with a cache of its own.

The cache holds the context but its last token (the root), as the engine's target cache does. `logits(paths)`
gives the next-token logits after the committed text + each path, from ONE forward over the root and the
tree of the paths' prefixes (positions from depth, a tree mask), and leaves those positions in the cache;
`accept(tokens)` keeps the root and the accepted path's nodes (`cache.keep`) and drops the rest, or forwards
what the tree did not hold. Rows already computed for the current committed text are reused, so the
several `process` calls of one step (verification, log-probabilities, a draft model's q) cost one forward.

That tree forward can also run as one sequence of a batched forward that someone else makes (`prepare`, then
`absorb` its logits): USCD's step runs the lame prompt's tree beside the target's in one `forward_batch`.
`reset` only records the prompt; it is prefilled on first use, into a cache given to `ready` (one that can be
batched with the target's) or a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from decodekit.models.loaded import LoadedModel
from decodekit.models.protocols import SequenceInput


class ModelContext:
    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.cache = None
        self.pending: list[int] | None = None  # a prompt recorded by reset, not yet prefilled
        self.root = 0
        self.past = 0  # committed tokens in the cache (the context but its root)
        self.nodes: dict[tuple[int, ...], int] = {}  # path -> its row of the last tree forward (root: ())
        self.rows: dict[tuple[int, ...], torch.Tensor] = {}  # path -> logits, for the current committed text
        self.prepared: dict[tuple[int, ...], int] | None = None
        self.forwards = 0

    def reset(self, prompt_ids: Sequence[int]) -> None:
        self._release()
        self.pending = list(prompt_ids)
        self.nodes, self.rows, self.prepared = {}, {}, None

    def ready(self, make_cache: Callable[[], object] | None = None) -> None:
        """Prefill the recorded prompt (but its root) into `make_cache()` (default: a fresh cache)."""
        if self.pending is None:
            return
        prompt, self.pending = self.pending, None
        self.cache = make_cache() if make_cache is not None else self.model.backend.new_cache()
        self.root, self.past = prompt[-1], len(prompt) - 1
        if self.past:
            self._forward(prompt[:-1], list(range(self.past)), None, last=1)

    def _forward(self, tokens: list[int], depths: list[int], mask: torch.Tensor | None, last: int = 0
                 ) -> torch.Tensor:
        self.forwards += 1
        positions = self.cache.length + torch.tensor(depths)
        return self.model.backend.forward(torch.tensor(tokens), positions, self.cache, mask, last)

    def logits(self, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """[len(paths), vocab] float32: the logits after the committed text + each path."""
        self.ready()
        keys = [tuple(path) for path in paths]
        if any(key not in self.rows for key in keys):
            self.absorb(self.model.backend.forward(**vars(self.prepare(keys))))
        return torch.stack([self.rows[key] for key in keys])

    def prepare(self, paths: Sequence[Sequence[int]]) -> SequenceInput:
        """The forward of the root and the tree of `paths`' prefixes, for this cache; `absorb` its logits."""
        self.ready()
        nodes: dict[tuple[int, ...], int] = {(): 0}
        parents: list[int] = []
        tokens: list[int] = []
        for key in paths:
            key = tuple(key)
            for depth in range(1, len(key) + 1):
                prefix = key[:depth]
                if prefix not in nodes:
                    nodes[prefix] = len(nodes)
                    parents.append(nodes[prefix[:-1]])
                    tokens.append(prefix[-1])
        size = len(nodes)
        mask = None
        if any(parent != row for row, parent in enumerate(parents)):  # not a chain: a tree mask
            mask = torch.zeros(size, size, dtype=torch.bool)
            mask[:, 0] = True
            for row, parent in enumerate(parents, start=1):
                mask[row] = mask[parent]
                mask[row, row] = True
        self.cache.truncate(self.past)
        self.prepared = nodes
        positions = self.past + torch.tensor([len(path) for path in nodes])
        return SequenceInput(torch.tensor([self.root] + tokens), positions, self.cache, mask)

    def absorb(self, out: torch.Tensor) -> None:
        """The logits of the prepared forward (one row per node, the root first)."""
        self.forwards += 1
        self.nodes, self.prepared = self.prepared, None
        self.rows = {path: out[row] for path, row in self.nodes.items()}

    def accept(self, tokens: Sequence[int]) -> None:
        """The engine committed `tokens`: the root and `tokens[:-1]` join the cache, `tokens[-1]` is the root."""
        tokens = list(tokens)
        if not tokens:
            return
        self.ready()
        path = tuple(tokens[:-1])
        wanted = [path[:depth] for depth in range(len(path) + 1)]
        if self.cache.length > self.past and all(prefix in self.nodes for prefix in wanted):
            self.cache.keep(self.past, [self.nodes[prefix] for prefix in wanted])
        else:  # the tree did not hold the path: forward it
            self.cache.truncate(self.past)
            self._forward([self.root] + list(path), list(range(len(path) + 1)), None, last=1)
        self.past += len(tokens)
        self.root = tokens[-1]
        self.nodes, self.rows = {}, {}

    def attach(self, cache, context: Sequence[int]) -> None:
        """Use `cache`, which holds `context` but its last token (the engine's prefilled target cache)."""
        self._release()
        self.pending = None
        self.cache = cache
        self.root, self.past = context[-1], len(context) - 1
        self.nodes, self.rows = {}, {}

    def catch_up(self, context: Sequence[int]) -> torch.Tensor:
        """The logits after all of `context`, which extends this cache's text (EAD's idle model taking over):
        ONE forward over the tokens the cache misses, its root included; then `accept` goes on as usual."""
        missing = list(context[self.cache.length:])
        out = self._forward(missing, list(range(len(missing))), None, last=1)[0]
        self.past, self.root = len(context) - 1, context[-1]
        self.nodes, self.rows = {(): 0}, {(): out}
        return out

    def fork(self) -> ModelContext:
        twin = ModelContext(self.model)
        if self.cache is not None:
            twin.cache = self.cache.fork()
        twin.pending = None if self.pending is None else list(self.pending)
        twin.root, twin.past = self.root, self.past
        twin.nodes, twin.rows = dict(self.nodes), dict(self.rows)
        return twin

    def _release(self) -> None:
        release = getattr(self.cache, "release", None)
        if release is not None:
            release()
        self.cache = None
