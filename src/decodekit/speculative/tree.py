"""A draft tree as the forward and the processors see it: its attention mask, the token path that leads to each
logits row, the tree with the nodes that a constraint forbids removed, and the tree with a constraint's own
proposal grafted in.

Rows: row 0 is the root (the last committed token), row 1 + i is draft node i.
"""

from __future__ import annotations

import torch

from decodekit.drafting.base import Draft
from decodekit.sampling import Sampler


def tree_mask(draft: Draft) -> torch.Tensor:
    """[1 + n + a, 1 + n + a] boolean over the root, the n nodes and the a auxiliary tokens: a node may
    attend to itself and its ancestors (0 = root); auxiliary rows are the draft's own aux_mask."""
    n = len(draft) + 1
    total = n + len(draft.aux_tokens)
    mask = torch.zeros(total, total, dtype=torch.bool)
    mask[:n, 0] = True
    for node, parent in enumerate(draft.parents):
        row = node + 1
        mask[row] = mask[parent + 1]
        mask[row, row] = True
    if draft.aux_tokens:
        mask[n:] = draft.aux_mask
    return mask


def row_paths(draft: Draft) -> list[list[int]]:
    """For each logits row, the draft tokens after the committed text that lead to it ([] at the root)."""
    paths: list[list[int]] = [[]]
    for node, parent in enumerate(draft.parents):
        paths.append(paths[parent + 1] + [draft.tokens[node]])
    return paths


def children(draft: Draft) -> list[list[int]]:
    """children[r]: the draft nodes whose parent is logits row r."""
    below: list[list[int]] = [[] for _ in range(len(draft) + 1)]
    for node, parent in enumerate(draft.parents):
        below[parent + 1].append(node)
    return below


def prune(draft: Draft, sampler: Sampler) -> Draft:
    """The draft without the nodes the sampler's constraints forbid (and their descendants). Auxiliary tokens
    are dropped with any pruning, since their mask refers to the original layout."""
    if not draft.tokens or not sampler.constrains:
        return draft
    paths = row_paths(draft)
    kept: dict[int, int] = {}  # old node -> new node
    for node, (token, parent) in enumerate(zip(draft.tokens, draft.parents)):
        if (parent < 0 or parent in kept) and sampler.allows(paths[parent + 1], token):
            kept[node] = len(kept)
    if len(kept) == len(draft):
        return draft
    order = list(kept)
    q = None if draft.q is None else draft.q[order]
    parents = [-1 if draft.parents[node] < 0 else kept[draft.parents[node]] for node in order]
    return Draft([draft.tokens[node] for node in order], parents, q)


def graft(draft: Draft, chain: list[int]) -> Draft:
    """The draft with `chain` (tokens after the root) as one of its root paths: nodes already on that path are
    kept (with their q), the missing ones are appended as one-hot proposals (a one-hot q row when the draft
    has q), so every other node keeps its place. Auxiliary tokens keep their own mask and see no new node."""
    if not chain:
        return draft
    tokens, parents = list(draft.tokens), list(draft.parents)
    node, added = -1, []
    for token in chain:
        match = next((c for c in range(len(tokens)) if parents[c] == node and tokens[c] == token), None)
        if match is None:
            tokens.append(token)
            parents.append(node)
            match = len(tokens) - 1
            added.append(token)
        node = match
    if not added:
        return draft
    q = draft.q
    if q is not None:
        q = torch.cat([q, torch.nn.functional.one_hot(torch.tensor(added), q.shape[-1]).to(q.dtype)])
    aux_mask = draft.aux_mask
    if draft.aux_tokens:
        n = len(draft) + 1
        gap = aux_mask.new_zeros(len(draft.aux_tokens), len(added))
        aux_mask = torch.cat([aux_mask[:, :n], gap, aux_mask[:, n:]], dim=1)
    return Draft(tokens, parents, q, list(draft.aux_tokens), list(draft.aux_depths), aux_mask)
