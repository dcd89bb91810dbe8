"""A draft model with the target's vocabulary drafting a tree (method `draft-tree`), in the spirit of SpecInfer
(Miao et al. 2024), Sequoia (Chen et al. 2024) and EAGLE-2's dynamic trees, with a SpecDec++-style stop rule.

Expansion, level by level. The root's distribution comes from syncing the draft cache with the context (below).
At each depth, every frontier node (a node whose distribution is known) offers children; a node's *score* is
the product of the draft probabilities along its path (the draft model's processed distribution, the request's
processor chain applied with each row's own path, as for a chain), and its *estimate* (the estimated
probability that the target accepts it) is its parent's estimate times min(1, q(x) * c_r), where c_r is an
online calibration of sibling rank r (r = 0 for the most probable child, or the first draw): over the
children of the root and of accepted nodes, the discounted number accepted over the discounted sum of their
draft probabilities (both start at 2, i.e. c_r = 1, trusting the draft model). The next
frontier is the `width` best new nodes by estimate whose estimate is at least `threshold` (the stop rule:
stop expanding a path when its estimated probability of being accepted falls below the threshold, SpecDec++'s
rule with the calibrated draft probability in place of a trained head) and that could still enter the tree
(greedy: fewer than `limit` nodes estimate higher); the whole frontier is ONE draft forward with a tree mask
over the new nodes and the earlier tree levels already in the draft cache (a wide mask, `masks_cached`
backends: lean and transformers), at positions from depth. Depth stops at `depth` levels, an empty
frontier, or an end-of-sequence token (which gets no children). So width and depth adapt to how well the
draft model agrees with the target, per step and online.

Greedy (and `siblings=top` under sampling): each frontier node offers its `width` most probable tokens; the
tree is the `limit` nodes of highest estimate (parents estimate at least as high as their children, so this is
a tree), then cut to the number that maximises expected tokens per second on the target's measured cost curve
(`CostCurve.best_size`, as the other tree drafters do) unless `tree_size` fixes it. The proposal is a
deterministic function of the context and of past steps, so greedy verification gives plain greedy's output;
under sampling the siblings are not draws from q, so the draft carries no q and the verifier uses its one-hot
rule (accept x with probability r(x), else remove x from the residual r), which is exact for any proposal that
does not depend on the verifier's own random draws. Giving these deterministic top-k siblings their q rows
would be wrong: q-based acceptance min(1, r(x)/q(x)) assumes x ~ q (the chi-square test's wrong variant).

Sampling (`siblings=sample`, the default): each frontier node draws m children independently from its q (with
replacement, the drafter's own generator), and every node carries q, its parent's row; the verifier's
multi-round rule (accept child j with probability min(1, r(x_j)/q(x_j)), else r <- norm(max(0, r - q))) is
then exact (SpecInfer's theorem: each round is one speculative-sampling step of a target r against a draw
from q, so the token that leaves a node has the target's distribution). This needs, at every node, that its
children be i.i.d. draws from q given how many there are: their number may depend on anything but their own
values. So under sampling the shape is decided value-blind: m = min(width, max(1, ceil(width * (1 - max q))))
is fixed from q before drawing (a peaked q gets one child, a flat one `width`); a node's own token may decide
whether *it* is expanded (estimate, end-of-sequence, a repeat of an earlier sibling, which can never be
accepted after the first copy was rejected, so its subtree is not drafted); and the node budget of the step is
fixed before the step (from the previous step's tree on the cost curve, or `tree_size`), nodes being taken in
drawing order up to it (a prefix of i.i.d. draws is i.i.d.). No cut by the nodes' own values is made after
drawing.

Cache: the draft cache holds the context the drafter last synced to, then the tree nodes it forwarded (every
level but the last), in forwarding order. Sync for the next step: the longest common prefix with the new
context; when all of it is kept, the accepted path (as far as its nodes were forwarded) is kept with
`cache.keep` and the rest of the tree dropped, then the new tokens (at least the last one, the root) are
forwarded in one pass. The context is never prefilled twice. `forward_passes` counts draft forwards and
`forward_rows` the tokens they carried.
"""

from __future__ import annotations

import math

import torch

from decodekit.drafting.base import Draft
from decodekit.drafting.cost_curve import CostCurve
from decodekit.drafting.draft_model import draft_generator, same_vocabulary
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.sampling import Sampler

WIDTH = 4  # children per frontier node at most, and frontier nodes per level
DEPTH = 8  # tree levels at most
THRESHOLD = 0.1  # expand a node only while its estimated acceptance probability is at least this
MAX_TREE = 64  # nodes considered when the cost curve sizes the tree
SIBLINGS = ("sample", "top")
PRIOR = 2.0  # the calibration's prior weight (as many nodes, accepted as often as their scores say)
DISCOUNT = 0.98  # the calibration's discount per step


class TreeDrafter:
    """Drafts a tree with `draft` (same vocabulary as `target`) and its own cache kept across steps."""

    def __init__(self, target: LoadedModel, draft: LoadedModel, curve: CostCurve | None = None,
                 tree_size: int | None = None, width: int = WIDTH, depth: int = DEPTH,
                 threshold: float = THRESHOLD, siblings: str = "sample", max_tree: int = MAX_TREE) -> None:
        check_tree_options(width, depth, threshold, siblings, tree_size)
        if curve is None and tree_size is None:
            raise ValueError("draft-tree needs a cost curve or a fixed tree_size")
        if not same_vocabulary(target.tokenizer, draft.tokenizer):
            raise UserError(f"draft-tree needs a draft model with the target's vocabulary: {draft.name!r} and "
                            f"{target.name!r} differ (method 'draft' bridges them through text as a chain)")
        if not getattr(draft.backend, "masks_cached", False):
            raise UserError(f"draft-tree needs the draft model on a backend whose forward masks cached positions "
                            f"(lean or transformers), not {draft.backend.name!r}")
        self.model = draft
        self.vocab_size = target.vocab_size
        self.curve = curve
        self.tree_size = tree_size
        self.width, self.depth, self.threshold, self.siblings = width, depth, threshold, siblings
        self.max_tree = max(max_tree, tree_size or 0)
        self.sampler = Sampler()
        self.generator: torch.Generator | None = None
        self.cache = None
        self.cached: list[int] = []  # the context whose keys and values the cache holds first
        self.forwarded: list[tuple[int, int]] = []  # tree nodes after it in the cache: (token, parent's index)
        self.forward_passes = 0
        self.forward_rows = 0
        self.predicted = [PRIOR] * width  # per sibling rank: discounted sum of the draft probabilities of the
        self.hits = [PRIOR] * width  # verified children of accepted nodes, and how many of them were accepted
        self.next_size: int | None = None  # the sampled tree's node budget for the next step
        self.last: tuple[list[int], list[int], list[float], list[int]] | None = None  # last proposal: tokens,
        # parents, each node's draft probability at its parent and its rank among its siblings

    @property
    def deterministic(self) -> bool:
        return self.sampler.greedy or self.siblings == "top"

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        self.sampler = sampler
        self.generator = draft_generator(sampler)
        self.cache = self.model.backend.new_cache()
        self.cached, self.forwarded = [], []
        self.forward_passes = self.forward_rows = 0
        self.last = None

    # the cache

    def _forward(self, ids: list[int], positions: list[int], mask: torch.Tensor | None = None,
                 last: int = 0) -> torch.Tensor:
        logits = self.model.backend.forward(torch.tensor(ids), torch.tensor(positions), self.cache, mask, last=last)
        self.forward_passes += 1
        self.forward_rows += len(ids)
        return logits

    def _sync(self, context: list[int]) -> torch.Tensor:
        """Make the cache hold `context` (keeping what it shares with it, the accepted tree path included);
        the draft logits after it."""
        common = 0
        for cached, new in zip(self.cached, context):
            if cached != new:
                break
            common += 1
        kept: list[int] = []
        if common == len(self.cached) and self.forwarded:
            parent = -1
            for token in context[common:]:
                match = next((i for i, (t, p) in enumerate(self.forwarded) if p == parent and t == token), None)
                if match is None:
                    break
                kept.append(match)
                parent = match
            self.cache.keep(common, kept)
        else:
            self.cache.truncate(common)
        length = common + len(kept)
        if length == len(context):  # the root's logits are needed: forward it again
            length -= 1
            self.cache.truncate(length)
        self.cached, self.forwarded = list(context), []
        return self._forward(context[length:], list(range(length, len(context))), last=1)[-1]

    def _fit(self, logits: torch.Tensor) -> torch.Tensor:
        size = logits.shape[-1]
        if size >= self.vocab_size:
            return logits[..., : self.vocab_size]
        pad = logits.new_full((*logits.shape[:-1], self.vocab_size - size), float("-inf"))
        return torch.cat([logits, pad], dim=-1)

    # drafting

    def calibration(self, rank: int) -> float:
        """How much likelier than its draft probability the target accepts a child of this sibling rank."""
        return self.hits[rank] / self.predicted[rank]

    def propose(self, context: list[int], budget: int) -> Draft:
        room = self.model.context_length - len(context)
        if self.deterministic:
            limit = min(budget, self.tree_size or self.max_tree)
        else:
            limit = min(budget, self.tree_size or self.next_size or budget)
        limit = min(limit, room)
        self.last = None
        if limit < 1 or not context:
            return Draft()
        root = self._sync(context)
        tokens: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        scores: list[float] = []
        estimates: list[float] = []
        conditional: list[float] = []  # draft probability at the parent
        ranks: list[int] = []  # rank among the siblings (drawing order under sampling)
        rows: list[torch.Tensor] = []  # q per node (sampling with sampled siblings)
        paths: list[list[int]] = []
        frontier: list[int] = [-1]  # nodes whose draft logits are `logits` (row per frontier node)
        logits = root[None]
        fwd_index: dict[int, int] = {}  # node -> its index among the forwarded tree nodes
        eos = self.model.eos_token_ids
        for level in range(1, self.depth + 1):
            probs = self.sampler.probs(self._fit(logits), [paths[f] if f >= 0 else [] for f in frontier])
            fresh: list[int] = []
            for f, q in zip(frontier, probs):
                base_score = scores[f] if f >= 0 else 1.0
                base_estimate = estimates[f] if f >= 0 else 1.0
                rank = 0
                if self.deterministic:
                    values, indices = q.topk(min(self.width, q.shape[-1]))
                    offered = [(int(t), float(p)) for t, p in zip(indices, values) if p > 0]
                else:
                    if len(tokens) >= limit:
                        break
                    m = min(self.width, max(1, math.ceil(self.width * (1.0 - float(q.max())))))
                    m = min(m, limit - len(tokens))
                    drawn = torch.multinomial(q, m, replacement=True, generator=self.generator).tolist()
                    offered = [(t, float(q[t])) for t in drawn]
                seen: set[int] = set()
                for token, p in offered:
                    node = len(tokens)
                    tokens.append(token)
                    parents.append(f)
                    depths.append(level)
                    scores.append(base_score * p)
                    estimates.append(base_estimate * min(1.0, p * self.calibration(rank)))
                    conditional.append(p)
                    ranks.append(rank)
                    rank += 1
                    paths.append((paths[f] if f >= 0 else []) + [token])
                    if not self.deterministic:
                        rows.append(q)
                    if token not in seen and token not in eos:
                        fresh.append(node)
                    seen.add(token)
            if level == self.depth or not fresh:
                break
            fresh.sort(key=lambda n: (-estimates[n], n))
            frontier = []
            for n in fresh[: self.width]:
                if estimates[n] < self.threshold:
                    break
                if self.deterministic and sum(1 for e in estimates if e > estimates[n]) >= limit:
                    break
                if len(self.forwarded) + len(frontier) + 1 > room - 1:
                    break
                frontier.append(n)
            if not frontier:
                break
            logits = self._forward_level(frontier, parents, tokens, depths, fwd_index, len(context))
        if self.deterministic:
            order = sorted(range(len(tokens)), key=lambda n: (-estimates[n], n))[:limit]
            if self.tree_size is None:
                order = order[: self.curve.best_size([estimates[n] for n in order])]
            order.sort()
        else:
            order = list(range(min(len(tokens), limit)))
            if self.tree_size is None:
                ranked = sorted((estimates[n] for n in order), reverse=True)
                self.next_size = max(1, self.curve.best_size(ranked))
        new_index = {old: i for i, old in enumerate(order)}
        draft = Draft([tokens[n] for n in order], [-1 if parents[n] < 0 else new_index[parents[n]] for n in order],
                      None if self.deterministic else torch.stack([rows[n] for n in order]))
        self.last = (draft.tokens, draft.parents, [conditional[n] for n in order], [ranks[n] for n in order])
        return draft

    def _forward_level(self, frontier: list[int], parents: list[int], tokens: list[int], depths: list[int],
                       fwd_index: dict[int, int], length: int) -> torch.Tensor:
        """One draft forward over the frontier nodes; each sees the context, its forwarded ancestors and itself."""
        done = len(self.forwarded)
        mask = torch.zeros(len(frontier), done + len(frontier), dtype=torch.bool)
        for row, node in enumerate(frontier):
            mask[row, done + row] = True
            ancestor = parents[node]
            while ancestor >= 0:
                mask[row, fwd_index[ancestor]] = True
                ancestor = parents[ancestor]
        for row, node in enumerate(frontier):
            parent = parents[node]
            fwd_index[node] = done + row
            self.forwarded.append((tokens[node], -1 if parent < 0 else fwd_index[parent]))
        positions = [length - 1 + depths[node] for node in frontier]
        return self._forward([tokens[n] for n in frontier], positions, mask)

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        """Calibrate the estimates per sibling rank: of the children of the root and of accepted nodes (those the
        verifier tried), how many were accepted against the sum of their draft probabilities."""
        if self.last is None:
            return
        mine_tokens, mine_parents, mine_probs, mine_ranks = self.last
        n = min(len(draft), len(mine_tokens))
        if draft.tokens[:n] != mine_tokens[:n] or draft.parents[:n] != mine_parents[:n]:
            return  # the step changed the draft (constraints pruned it): nothing to learn from
        for r in range(self.width):
            self.predicted[r] *= DISCOUNT
            self.hits[r] *= DISCOUNT
        tried = {-1, *accepted}
        chosen = set(accepted)
        for node in range(n):
            if mine_parents[node] in tried:
                self.predicted[mine_ranks[node]] += mine_probs[node]
                self.hits[mine_ranks[node]] += node in chosen
        self.last = None


def check_tree_options(width: object, depth: object, threshold: object, siblings: object,
                       tree_size: object = None) -> None:
    for name, value in (("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"draft-tree option {name} takes a whole number >= 1, got {value!r}")
    if tree_size is not None and (isinstance(tree_size, bool) or not isinstance(tree_size, int) or tree_size < 1):
        raise UserError(f"draft-tree option tree_size takes a whole number >= 1, got {tree_size!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise UserError(f"draft-tree option threshold is a probability in [0, 1], got {threshold!r}")
    if siblings not in SIBLINGS:
        raise UserError(f"draft-tree option siblings must be one of {', '.join(SIBLINGS)}, got {siblings!r}")
