"""Token Recycling (Luo et al. 2024, "Turning Trash into Treasure", P064): drafts from the target's own
discarded candidates.

Rule: an adjacency matrix keeps, for every token, the top-k next tokens the target predicted after it the
last time it was forwarded; every verification pass rewrites the rows of all its tokens (root, draft nodes,
auxiliary tokens) with the top-k of their logits (accepted-path rows win over rejected ones for the same
token). A draft is a static tree template of child ranks expanded breadth-first from the last committed
token: the node at rank path (r_1, ..., r_d) holds adjacency[...adjacency[root][r_1]...][r_d]; subtrees
under tokens that have no row yet are dropped.

The template is not the paper's hand-made 80-node "2.2.2" tree: it is grown from measured statistics. How
often the committed next token sits at rank r of its predecessor's row gives p(r); the template holds the
rank paths with the highest products p(r_1) ... p(r_d) (best-first, so every node follows its parent), which
maximises the expected accepted length for its size. Its size is then chosen from the machine's cost curve
(`cost_curve.py`) to maximise expected tokens per second, and capped by the step's budget.

The matrix and the rank statistics persist across the requests of a process (one state per model, k and
learning scope, kept by the session: drafting/state_store.py), and can be saved to and loaded from a file
(`matrix_file`), written when the next request starts and at exit.

Parameters (method options): `topk` = 8 (k, the paper's value), `tree_size` = chosen from the cost curve
(a fixed number of nodes skips the measurement), `max_tree` = 128 (the largest template considered),
`matrix_file` = none.
"""

from __future__ import annotations

import atexit
import heapq
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from decodekit.drafting.base import Draft
from decodekit.drafting.cost_curve import CostCurve
from decodekit.drafting.state_store import StateStore
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.sampling.sampler import Sampler

TOPK = 8
MAX_TREE = 128
# Before any statistics: p(rank) as pseudo-counts worth PRIOR_TRIALS observations.
PRIOR = (0.45, 0.12, 0.06, 0.04, 0.03, 0.02, 0.015, 0.01)
PRIOR_TRIALS = 20.0
RETEMPLATE_EVERY = 16  # steps between rebuilds of the template from the rank statistics


class RecycleState:
    """The adjacency matrix [vocab, k] (rows valid where `known`) and the rank-hit statistics."""

    def __init__(self, vocab_size: int, k: int = TOPK) -> None:
        if k < 1:
            raise UserError(f"recycle: topk must be at least 1, got {k}")
        self.k = k
        self.adjacency = torch.zeros(vocab_size, k, dtype=torch.int32)
        self.known = torch.zeros(vocab_size, dtype=torch.bool)
        self.rank_hits = torch.tensor([PRIOR[r] if r < len(PRIOR) else 0.0 for r in range(k)]) * PRIOR_TRIALS
        self.trials = PRIOR_TRIALS
        self.dirty = False

    @property
    def vocab_size(self) -> int:
        return self.adjacency.shape[0]

    def rank_probs(self) -> list[float]:
        """p(r): how often the committed token was at rank r of its predecessor's row (when it had one)."""
        return (self.rank_hits / self.trials).tolist()

    def record(self, sequence: list[int]) -> None:
        """Rank statistics of consecutive committed tokens, read before this step's rows are rewritten."""
        for prev, token in zip(sequence, sequence[1:]):
            if not self.known[prev]:
                continue
            self.trials += 1
            hits = (self.adjacency[prev] == token).nonzero()
            if len(hits):
                self.rank_hits[int(hits[0])] += 1

    def update(self, tokens: list[int], logits: torch.Tensor) -> None:
        """Rewrite row tokens[i] with the top-k of logits[i]; for a repeated token the last row wins."""
        last = {token: row for row, token in enumerate(tokens)}
        rows = torch.tensor(list(last.values()))
        index = torch.tensor(list(last.keys()))
        self.adjacency[index] = logits[rows].topk(self.k, dim=-1).indices.to(torch.int32)
        self.known[index] = True
        self.dirty = True

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        os.close(handle)
        torch.save({"format": "decodekit-recycle-1", "adjacency": self.adjacency, "known": self.known,
                    "rank_hits": self.rank_hits, "trials": self.trials}, staging)
        os.replace(staging, path)
        self.dirty = False

    def load(self, path: Path) -> None:
        try:
            data = torch.load(path, weights_only=True)
        except Exception as error:  # torch raises many kinds for a file that is not its format
            raise UserError(f"recycle: cannot read the matrix file {path}: {error}") from error
        if not isinstance(data, dict) or data.get("format") != "decodekit-recycle-1":
            raise UserError(f"recycle: {path} is not a token-recycling matrix file")
        shape = tuple(data["adjacency"].shape)
        if shape != (self.vocab_size, self.k):
            raise UserError(f"recycle: {path} holds a {shape[0]} x {shape[1]} matrix; this model and topk "
                            f"need {self.vocab_size} x {self.k}")
        self.adjacency = data["adjacency"].to(torch.int32)
        self.known = data["known"].to(torch.bool)
        self.rank_hits = data["rank_hits"].float()
        self.trials = float(data["trials"])
        self.dirty = False


class MatrixFile:
    """A state bound to a file: loaded from it when bound (if it exists), saved at every later `sync` and at
    exit."""

    def __init__(self, state: RecycleState, path: Path) -> None:
        self.state, self.path = state, path
        self.synced = False
        if path.is_file():
            state.load(path)
        atexit.register(self.save)

    def sync(self) -> None:
        if self.synced:
            self.save()
        self.synced = True

    def save(self) -> None:
        if self.state.dirty:
            self.state.save(self.path)


def shared_state(store: StateStore, model: LoadedModel, k: int = TOPK, matrix_file: str | None = None
                 ) -> RecycleState:
    """The session's state for the model and k (in the store's learning scope). With `matrix_file`, it is
    loaded from that file the first time (when the file exists), saved again whenever another drafter asks
    for it and at exit."""
    state = store.learned(("recycle", model.name, model.vocab_size, k), lambda: RecycleState(model.vocab_size, k))
    if matrix_file is not None:
        path = Path(matrix_file).expanduser().resolve()
        store.kept(("recycle_file", path), lambda: MatrixFile(state, path)).sync()
    return state


@dataclass(frozen=True)
class Template:
    """A tree of child ranks, nodes in the order they were added (a parent before its children)."""

    parents: list[int]  # -1 = the root
    ranks: list[int]
    gains: list[float]  # each node's estimated probability of being accepted


def grow_template(rank_probs: list[float], size: int) -> Template:
    """The `size` rank paths with the highest products of p(rank), best first."""
    parents: list[int] = []
    ranks: list[int] = []
    gains: list[float] = []
    order = sorted(range(len(rank_probs)), key=lambda r: -rank_probs[r])
    heap = [(-rank_probs[r], i, -1, r) for i, r in enumerate(order)]
    heapq.heapify(heap)
    serial = len(heap)
    while heap and len(parents) < size:
        negative, _, parent, rank = heapq.heappop(heap)
        node = len(parents)
        parents.append(parent)
        ranks.append(rank)
        gains.append(-negative)
        for r in order:
            heapq.heappush(heap, (negative * rank_probs[r], serial, node, r))
            serial += 1
    return Template(parents, ranks, gains)


class RecycleDrafter:
    """Drafts the template tree from the adjacency matrix; learns from every row of every step."""

    forward_passes = 0  # model-free: no drafting forwards

    def __init__(self, state: RecycleState, curve: CostCurve | None = None, tree_size: int | None = None,
                 max_tree: int = MAX_TREE) -> None:
        if curve is None and tree_size is None:
            raise ValueError("recycle needs a cost curve or a fixed tree_size")
        if tree_size is not None and tree_size < 1:
            raise UserError(f"recycle: tree_size must be at least 1, got {tree_size}")
        if max_tree < 1:
            raise UserError(f"recycle: max_tree must be at least 1, got {max_tree}")
        self.state = state
        self.curve = curve
        self.fixed_size = tree_size
        self.max_tree = max(max_tree, tree_size or 0)
        self.template = Template([], [], [])
        self.size = 0
        self.last = 0  # the last committed token: the root of the next draft
        self.steps = 0

    def _retemplate(self) -> None:
        self.template = grow_template(self.state.rank_probs(), self.max_tree)
        self.size = self.fixed_size or self.curve.best_size(self.template.gains)

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.last = prompt_ids[-1]
        self.steps = 0
        self._retemplate()

    def propose(self, context: list[int], budget: int) -> Draft:
        return self.draft_from(context[-1], min(self.size, budget))

    def draft_from(self, root: int, size: int) -> Draft:
        """The first `size` template nodes expanded from `root`, without subtrees under unknown rows."""
        state = self.state
        rows: dict[int, list[int] | None] = {}
        tokens: list[int] = []
        parents: list[int] = []
        placed: list[int] = []  # template node -> draft node, -1 when dropped
        for parent, rank in zip(self.template.parents[:size], self.template.ranks[:size]):
            if parent >= 0 and placed[parent] < 0:
                placed.append(-1)
                continue
            source = root if parent < 0 else tokens[placed[parent]]
            if source not in rows:
                rows[source] = state.adjacency[source].tolist() if state.known[source] else None
            row = rows[source]
            if row is None:
                placed.append(-1)
                continue
            placed.append(len(tokens))
            tokens.append(row[rank])
            parents.append(-1 if parent < 0 else placed[parent])
        return Draft(tokens, parents)

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        self.state.record([self.last] + committed)
        on_path = [0] + [node + 1 for node in accepted]
        row_tokens = [self.last] + draft.tokens + draft.aux_tokens
        path = set(on_path)
        off_path = [row for row in range(len(row_tokens)) if row not in path]
        order = off_path + on_path
        self.state.update([row_tokens[row] for row in order], logits[order])
        self.last = committed[-1]
        self.steps += 1
        if self.steps % RETEMPLATE_EVERY == 0:
            self._retemplate()
