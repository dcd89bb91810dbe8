"""Is verification exact on a backend's fast path? A draft tree's forward against one-token decoding, row by row.

The rule: the logits that verification reads for a tree node must be the logits that decoding one token at a
time gives the same token after the same ancestors, on the same backend. Then greedy verification accepts
exactly the tokens plain greedy decoding produces, and speculative sampling draws from exactly the target's
distribution; where the two differ by rounding, a near-tie between two tokens can flip and a speculative
method's output can leave plain decoding's.

`tree_vs_single(backend, prefix, draft)` caches `prefix` but its last token (the root, as the step does), runs
one forward over the root and the draft with its tree mask, then for every row feeds the row's path (root,
ancestors, the row's token) one token at a time into the same cache and takes the last logits. It reports the
largest absolute difference between the two and the rows whose argmax differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.drafting.base import Draft
from decodekit.models.protocols import Backend
from decodekit.speculative.tree import tree_mask


@dataclass
class RowComparison:
    """A tree forward against one-token decoding: per row and overall."""

    row_diffs: list[float]  # per row, the largest |tree - single| over the vocabulary
    flipped_rows: list[int]  # rows whose argmax differs
    rows: int

    @property
    def max_abs_diff(self) -> float:
        return max(self.row_diffs)

    @property
    def argmax_flips(self) -> int:
        return len(self.flipped_rows)

    @property
    def exact(self) -> bool:
        return self.max_abs_diff == 0.0


def row_paths(draft: Draft) -> list[list[int]]:
    """For each row (0 = the root, 1 + i = node i), the rows from the root down to it."""
    paths = [[0]]
    for node, parent in enumerate(draft.parents):
        paths.append(paths[parent + 1] + [node + 1])
    return paths


def tree_vs_single(backend: Backend, prefix: list[int], draft: Draft) -> RowComparison:
    """Compare a tree forward with one-token decoding row by row (see the module docstring)."""
    if not prefix:
        raise ValueError("the prefix needs at least the root token")
    if draft.aux_tokens:
        raise ValueError("auxiliary tokens are not verified: compare a draft without them")
    past = len(prefix) - 1
    cache = backend.new_cache()
    if past:
        backend.forward(torch.tensor(prefix[:-1]), torch.arange(past), cache, last=1)
    tokens = [prefix[-1], *draft.tokens]
    positions = past + torch.tensor([0, *draft.depths()])
    mask = None if draft.is_chain else tree_mask(draft)
    tree = backend.forward(torch.tensor(tokens), positions, cache, mask)
    cache.truncate(past)
    single = torch.empty_like(tree)
    for row, path in enumerate(row_paths(draft)):
        for depth, node in enumerate(path):
            logits = backend.forward(torch.tensor([tokens[node]]), torch.tensor([past + depth]), cache)
        single[row] = logits[0]
        cache.truncate(past)
    diffs = (tree - single).abs().amax(dim=-1)
    flipped = (tree.argmax(dim=-1) != single.argmax(dim=-1)).nonzero().flatten().tolist()
    return RowComparison([float(d) for d in diffs], flipped, len(tokens))
