"""The drafter protocol and the draft tree it returns.

A draft is a tree hanging below the *root*: the last committed token, which is not yet in the KV cache and
is forwarded together with the draft. Node i has token `tokens[i]` and parent `parents[i]` (-1 = the root;
otherwise an earlier node, so parents[i] < i). A chain is the tree with parents = [-1, 0, 1, ...].

`q` (optional) holds the drafter's own probability distribution at each node's parent, one row per node:
q[i] is the distribution from which `tokens[i]` was drawn. Deterministic drafters leave it None and the
verifier treats them as one-hot proposals. Siblings drawn from the same distribution share the same row.

Auxiliary tokens (optional) ride along in the same forward without being verified or kept in the cache
(Lookahead's Jacobi window): `aux_depths` are their positions relative to the root (the root is at 0) and
`aux_mask` [n_aux, 1 + n + n_aux] says what each may attend to among the root, the nodes and the auxiliary
tokens (the committed context is always visible). Their logits reach the drafter in `observe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from decodekit.sampling.sampler import Sampler


@dataclass
class Draft:
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    q: torch.Tensor | None = None  # [len(tokens), vocab] float32, rows sum to 1
    aux_tokens: list[int] = field(default_factory=list)
    aux_depths: list[int] = field(default_factory=list)
    aux_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.parents):
            raise ValueError("a draft needs one parent per token")
        if any(not -1 <= p < i for i, p in enumerate(self.parents)):
            raise ValueError("each parent must be -1 (the root) or an earlier node")
        if len(self.aux_tokens) != len(self.aux_depths):
            raise ValueError("a draft needs one depth per auxiliary token")
        if self.aux_tokens and (self.aux_mask is None or tuple(self.aux_mask.shape) != (
                len(self.aux_tokens), 1 + len(self.tokens) + len(self.aux_tokens))):
            raise ValueError("auxiliary tokens need an aux_mask of shape [n_aux, 1 + n + n_aux]")

    @classmethod
    def chain(cls, tokens: list[int], q: torch.Tensor | None = None) -> Draft:
        return cls(list(tokens), list(range(-1, len(tokens) - 1)), q)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def is_chain(self) -> bool:
        return self.parents == list(range(-1, len(self.tokens) - 1))

    def depths(self) -> list[int]:
        """Depth of each node below the root (children of the root have depth 1)."""
        depth: list[int] = []
        for parent in self.parents:
            depth.append(1 if parent < 0 else depth[parent] + 1)
        return depth


class Drafter(Protocol):
    """Proposes continuations of the committed context and learns from what the target accepted."""

    forward_passes: int  # forwards of a drafting model in the current request (0 for model-free drafters)

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        """Start a new request whose prompt is `prompt_ids`. A drafter that samples its own tokens with
        probabilities q must take q from `sampler.probs` over its own logits and paths (the request's whole
        processor chain), and draw from its own generator."""

    def propose(self, context: list[int], budget: int) -> Draft:
        """A draft tree of at most `budget` nodes continuing `context` (prompt + committed output)."""

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        """After a step: the tokens just committed, the target logits of that step (row 0 = root, row
        1 + i = draft node i, then one row per auxiliary token), the draft, and the accepted node indices
        (a root path)."""
