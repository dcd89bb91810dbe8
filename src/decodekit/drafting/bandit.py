"""Online choice of drafter and draft budget as a bandit (BanditSpec, Hou et al. 2025, P045, UCBSpec), with
full-information feedback.

Rule: the arms are (drafter, budget) pairs and "no draft" (plain decoding). Every step, every drafter
proposes at the largest budget; an arm's draft is the first `budget` nodes of its drafter's proposal. What
an arm would have earned is known for every arm, not only the one that drafted: once the text that followed
is committed (and committed text is exactly the target's output, greedy or sampled), each arm's draft is
matched against it, and a deterministic draft node is accepted exactly when it matches (under sampling, a
node's chance to match a sample equals its chance to be accepted by recursive rejection sampling). For each
arm and depth k the statistics keep how often a draft that reached depth k was accepted to depth k; the
expected accepted length of this step's draft is the sum of those rates over its depths. Drafters that copy
a match (pld, sam: a `match_length` attribute) are judged apart by how long their match is (1, 2, 3-4, 5-8,
9+ tokens), each bucket's rates shrunk towards the arm's as if the arm's were 4 drafts: a long suffix match
is far likelier to continue than a one-token one, the signal SAM-Decoding's hybrid switches on.

The arm chosen maximises (1 + expected accepted) / (forward time of its draft + step overhead), the forward
time read from the machine's cost curve (cost_curve.py) and the overhead measured (step time beyond the
forward), normalised by the best arm's score, plus `exploration` * sqrt(ln(total) / its count) for arms
seldom seen. Statistics are discounted by `discount` per step (so the choice follows a request whose text
changes character) and are kept for the process, per model and arm set, so later requests start from what
earlier ones learned. Every drafter observes every step, whoever drafted, so each stays current (n-gram
tables, adjacency matrix, automata). Auxiliary tokens (Lookahead's window) ride only with their own
drafter's whole proposal.

BanditSpec learns only from the arm it pulled; here a step's evaluation of all arms costs the drafters'
proposals (tens of microseconds each for the model-free ones) and no forward, so no step is spent exploring.

Drafters with a model of their own (`lazy`: draft, draft-tree, layerskip) cost forwards to propose, so they
propose only when one of their arms is chosen, and learn only then (BanditSpec's bandit feedback, the
exploration term bringing them back): their arms are scored on their last proposal's shape (or a chain of the
arm's budget before the first) with their measured drafting seconds added to the step's cost, and the
choice is made before they draft, so it does not depend on their draws (under sampling, a lazy tree is cut to
the arm's budget in drawing order, a prefix of its i.i.d. draws). Between their proposals their caches fall
behind the text; their next proposal forwards what was committed meanwhile in one pass.

Parameters (method options of `auto`) and defaults: `drafters` = pld, sam, recycle, ngram (those
registered; a comma-separated list to choose, e.g. adding lookahead, whose Jacobi window makes every step
dearer), `budgets` = from the cost curve: the largest trees whose forward costs at most 1.25, 1.6 and 2.5
single-token forwards, and the step's budget (`--num-draft`) itself (a comma-separated list to fix them; a
budget of 128 or more means the step's), `exploration` = 0.1, `discount` = 0.99.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field

import torch

from decodekit.drafting.base import Draft, Drafter
from decodekit.drafting.cost_curve import CostCurve
from decodekit.drafting.state_store import StateStore
from decodekit.errors import UserError
from decodekit.sampling.sampler import Sampler

EXPLORATION = 0.1
DISCOUNT = 0.99
NO_DRAFT = "none"
PRIOR = 0.5  # a depth never seen counts as half a draft accepted there, out of one
STEP_BUDGET = 128  # an arm with this budget drafts as many nodes as the step allows (--num-draft)
MAX_DEPTH = 32  # depths past this are not counted (a deeper node's chance is taken as nil)
MATCH_BUCKETS = (2, 3, 5, 9)  # match lengths 1, 2, 3-4, 5-8, 9+ are judged apart
SHRINK = 4.0  # a bucket's rates lean on the arm's overall rates as if they were this many drafts


@dataclass(frozen=True)
class Arm:
    drafter: str  # a drafter's name, or NO_DRAFT
    budget: int

    def __str__(self) -> str:
        if self.drafter == NO_DRAFT:
            return self.drafter
        return f"{self.drafter}@{'step' if self.budget >= STEP_BUDGET else self.budget}"


def match_bucket(match_length: int | None) -> int:
    """The context a proposal is judged in: how long a match it copies (0 for drafters that do not match)."""
    return 0 if match_length is None else 1 + bisect.bisect_right(MATCH_BUCKETS, match_length)


@dataclass
class BanditStats:
    """Per arm, per match bucket (match_bucket) and depth k (1-based, up to MAX_DEPTH): discounted counts of
    drafts that reached depth k (`reached`) and of those accepted to depth k (`accepted`). Bucket -1 holds
    the arm's drafts of every bucket."""

    arms: list[Arm]
    reached: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    accepted: dict[tuple[int, int], list[float]] = field(default_factory=dict)

    def _rows(self, arm: int, bucket: int) -> tuple[list[float], list[float]]:
        if (arm, bucket) not in self.reached:
            depth = min(self.arms[arm].budget, MAX_DEPTH)
            self.reached[arm, bucket], self.accepted[arm, bucket] = [0.0] * depth, [0.0] * depth
        return self.reached[arm, bucket], self.accepted[arm, bucket]

    def count(self, arm: int) -> float:
        """Discounted number of evaluated drafts of `arm` (those that reached depth 1)."""
        reached = self._rows(arm, -1)[0]
        return reached[0] if reached else 0.0

    def expected_accepted(self, arm: int, depth: int, bucket: int = -1) -> float:
        """Expected accepted length of a draft of `arm` whose deepest node is at `depth`, made in `bucket`:
        per depth, the bucket's acceptance rate shrunk towards the arm's (worth SHRINK drafts)."""
        all_reached, all_accepted = self._rows(arm, -1)
        reached, accepted = self._rows(arm, bucket)
        total = 0.0
        for k in range(min(depth, len(reached))):
            overall = (all_accepted[k] + PRIOR) / (all_reached[k] + 1.0)
            total += overall if bucket == -1 else (accepted[k] + SHRINK * overall) / (reached[k] + SHRINK)
        return total

    def record(self, arm: int, depth: int, accepted_length: int, bucket: int = -1) -> None:
        for key in {-1, bucket}:
            reached, accepted = self._rows(arm, key)
            for k in range(min(depth, len(reached))):
                reached[k] += 1.0
                if k < accepted_length:
                    accepted[k] += 1.0

    def decay(self, discount: float) -> None:
        for key, reached in self.reached.items():
            accepted = self.accepted[key]
            for k in range(len(reached)):
                reached[k] *= discount
                accepted[k] *= discount


def shared_stats(store: StateStore, key: tuple, arms: list[Arm]) -> BanditStats:
    """The process's statistics for `key` (e.g. the model) and this arm set, in the current learning scope."""
    return store.learned(("bandit", key, tuple(arms)), lambda: BanditStats(list(arms)))


def limit(draft: Draft, budget: int) -> Draft:
    """The first `budget` nodes (a tree, since parents come before children); auxiliary tokens only ride
    with the whole draft."""
    if len(draft) <= budget:
        return draft
    q = None if draft.q is None else draft.q[:budget]
    return Draft(draft.tokens[:budget], draft.parents[:budget], q)


def matched_path(draft: Draft, following: list[int]) -> list[int]:
    """The nodes of the root path that matches `following` (the tokens committed after the draft's root),
    taking the first matching child at each depth, as greedy verification does."""
    path, node = [], -1
    for token in following:
        child = next((i for i in range(node + 1, len(draft)) if draft.parents[i] == node
                      and draft.tokens[i] == token), None)
        if child is None:
            break
        path.append(child)
        node = child
    return path


@dataclass
class _Pending:
    """A step's proposals, waiting for the text that decides how far each arm's part would have matched."""

    position: int  # index in the text of the first token the drafts predict
    proposals: dict[str, Draft]  # drafter -> its whole proposal
    depths: dict[str, list[int]]  # drafter -> the depth of each node of its proposal
    buckets: dict[str, int]  # drafter -> the match bucket its proposal was made in
    arms: dict[int, int]  # arm -> how many leading nodes of its drafter's proposal it drafts
    depth: int  # the deepest node among the proposals


class BanditDrafter:
    """Drafts each step with the arm whose expected tokens per second is highest; learns from every arm."""

    def __init__(self, drafters: dict[str, Drafter], stats: BanditStats, curve: CostCurve | None = None,
                 exploration: float = EXPLORATION, discount: float = DISCOUNT, lazy: frozenset[str] = frozenset()
                 ) -> None:
        if exploration < 0:
            raise UserError(f"auto: exploration must be >= 0, got {exploration}")
        if not 0 < discount <= 1:
            raise UserError(f"auto: discount must be in (0, 1], got {discount}")
        unknown = {arm.drafter for arm in stats.arms} - set(drafters) - {NO_DRAFT}
        if unknown:
            raise ValueError(f"arms name drafters that were not given: {sorted(unknown)}")
        self.drafters = drafters
        self.stats = stats
        self.largest = {arm.drafter: max(b.budget for b in stats.arms if b.drafter == arm.drafter)
                        for arm in stats.arms if arm.drafter != NO_DRAFT}
        self.by_budget = sorted(range(len(stats.arms)), key=lambda a: stats.arms[a].budget)
        self.curve = curve
        self.exploration = exploration
        self.discount = discount
        self.overhead = 0.0  # seconds a step takes beyond its forward (measured; only used with a curve)
        self.text: list[int] = []
        self.pending: list[_Pending] = []
        self.step: tuple[float, float] | None = None  # (when the step began, its forward time per the curve)
        self.chosen: list[str] = []  # the arm of each step of the current request
        self.lazy = frozenset(lazy) & set(drafters)
        self.shapes: dict[str, Draft] = {}  # lazy drafter -> its last proposal (scores its arms)
        self.draft_seconds: dict[str, float] = {}  # lazy drafter -> measured seconds per proposal
        self.lazy_spent = 0.0  # seconds a lazy drafter spent drafting this step

    @property
    def forward_passes(self) -> int:
        return sum(getattr(self.drafters[name], "forward_passes", 0) for name in self.lazy)

    def reset(self, prompt_ids: list[int], sampler: Sampler) -> None:
        for drafter in self.drafters.values():
            drafter.reset(prompt_ids, sampler)
        self.text = list(prompt_ids)
        self.pending = []
        self.step = None
        self.chosen = []

    def forward_time(self, draft: Draft) -> float:
        """Seconds of the target forward over the root and `draft` (every forward alike without a curve)."""
        if self.curve is None:
            return 1.0
        return self.curve.time(1 + len(draft) + len(draft.aux_tokens))

    def candidates(self, proposals: dict[str, Draft], budget: int) -> dict[int, Draft]:
        """Each arm's draft for this step, for the arms that draft something and differ under `budget`
        (per drafter, the arm with the smallest budget of each draft size)."""
        drafts: dict[int, Draft] = {}
        seen: set[tuple[str, int]] = set()
        for a in self.by_budget:
            arm = self.stats.arms[a]
            if arm.drafter == NO_DRAFT:
                drafts[a] = Draft()
                continue
            draft = limit(proposals[arm.drafter], min(arm.budget, budget))
            if len(draft) and (arm.drafter, len(draft)) not in seen:
                seen.add((arm.drafter, len(draft)))
                drafts[a] = draft
        return drafts

    def score(self, arm: int, draft: Draft, bucket: int) -> float:
        depth = max(draft.depths(), default=0)
        expected = 1.0 + (self.stats.expected_accepted(arm, depth, bucket) if depth else 0.0)
        drafting = self.draft_seconds.get(self.stats.arms[arm].drafter, 0.0)
        return expected / (self.forward_time(draft) + self.overhead + drafting)

    def propose(self, context: list[int], budget: int) -> Draft:
        start = time.perf_counter()
        self.lazy_spent = 0.0
        proposals = {name: self.drafters[name].propose(context, min(largest, budget))
                     for name, largest in self.largest.items() if name not in self.lazy}
        shapes = {name: self.shapes.get(name) or Draft.chain([0] * min(largest, budget))
                  for name, largest in self.largest.items() if name in self.lazy}
        buckets = {name: match_bucket(getattr(self.drafters[name], "match_length", None)) for name in proposals}
        buckets.update({name: 0 for name in shapes})
        drafts = self.candidates({**proposals, **shapes}, budget)
        scores = {a: self.score(a, draft, buckets.get(self.stats.arms[a].drafter, 0))
                  for a, draft in drafts.items()}
        best = max(scores.values())
        log_total = math.log(max(sum(self.stats.count(a) for a in drafts), 2.0))
        index = max(drafts, key=lambda a: scores[a] / best
                    + (self.exploration * math.sqrt(log_total / (self.stats.count(a) + 1.0))
                       if self.stats.arms[a].budget else 0.0))
        name = self.stats.arms[index].drafter
        if name in self.lazy:  # chosen before it drafts: now it does
            tick = time.perf_counter()
            proposals[name] = self.drafters[name].propose(context, min(self.largest[name], budget))
            self.lazy_spent = time.perf_counter() - tick
            seconds = self.draft_seconds.get(name)
            self.draft_seconds[name] = self.lazy_spent if seconds is None else 0.8 * seconds + 0.2 * self.lazy_spent
            self.shapes[name] = proposals[name]
            drafts = {a: d for a, d in drafts.items() if self.stats.arms[a].drafter not in self.lazy}
            drafts.update({a: d for a, d in self.candidates(proposals, budget).items()
                           if self.stats.arms[a].drafter == name})
            arm = self.stats.arms[index]
            drafts[index] = limit(proposals[name], min(arm.budget, budget))
        else:
            drafts = {a: d for a, d in drafts.items() if self.stats.arms[a].drafter not in self.lazy}
        arms = {a: len(d) for a, d in drafts.items() if len(d)}
        if arms:
            depths = {name: p.depths() for name, p in proposals.items()}
            depth = max(max(d, default=0) for d in depths.values())
            self.pending.append(_Pending(len(context), proposals, depths, buckets, arms, depth))
        self.step = (start, self.forward_time(drafts[index]))
        self.chosen.append(str(self.stats.arms[index]))
        return drafts[index]

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        if self.step is not None and self.curve is not None:
            start, forward = self.step
            beyond = max(0.0, time.perf_counter() - start - forward - self.lazy_spent)
            self.overhead = beyond if self.overhead == 0.0 else 0.9 * self.overhead + 0.1 * beyond
        self.step = None
        self.text.extend(committed)
        while self.pending and self.pending[0].position + self.pending[0].depth <= len(self.text):
            done = self.pending.pop(0)
            following = self.text[done.position: done.position + done.depth]
            self.stats.decay(self.discount)
            paths = {name: matched_path(p, following) for name, p in done.proposals.items()}
            for a, size in done.arms.items():
                name = self.stats.arms[a].drafter
                self.stats.record(a, max(done.depths[name][:size]), sum(1 for node in paths[name] if node < size),
                                  done.buckets[name])
        for drafter in self.drafters.values():
            drafter.observe(committed, logits, draft, accepted)
