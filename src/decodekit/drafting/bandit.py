"""Online choice of drafter and draft budget as a bandit (BanditSpec, Hou et al. 2025, P045, UCBSpec).

Rule: the arms are (drafter, budget) pairs and "no draft" (plain decoding). Before each step the arm with
the highest upper confidence bound is drafted with: its throughput estimate (tokens committed / seconds
from propose to observe, both summed over its past steps), normalised by the best arm's, plus
`exploration` * sqrt(ln(total pulls) / its pulls). Arms never pulled go first. Statistics are discounted
by `discount` each step (so the choice follows a request whose text changes character) and are kept for the
process, per model and arm set, so later requests start from what earlier ones learned. Every drafter
observes every step, whoever drafted, so each stays current (n-gram tables, adjacency matrix, automata).

An arm whose budget exceeds the step's budget drafts with the step's budget; of the arms that thereby
coincide only the one with the smallest budget is eligible.

Parameters (method options of `auto`) and defaults: `drafters` = pld, sam, recycle, ngram, lookahead
(those registered; a comma-separated list to choose), `budgets` = from the cost curve: the largest trees
whose forward costs at most 1.25, 1.6 and 2.5 single-token forwards (a comma-separated list to fix them),
`exploration` = 0.5, `discount` = 0.99.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from decodekit.drafting.base import Draft, Drafter
from decodekit.drafting.learning_scope import learning_scope
from decodekit.errors import UserError
from decodekit.sampling.config import SamplingConfig

EXPLORATION = 0.5
DISCOUNT = 0.99
NO_DRAFT = "none"


@dataclass(frozen=True)
class Arm:
    drafter: str  # a drafter's name, or NO_DRAFT
    budget: int

    def __str__(self) -> str:
        return self.drafter if self.drafter == NO_DRAFT else f"{self.drafter}@{self.budget}"


@dataclass
class BanditStats:
    """Discounted pulls, committed tokens and seconds per arm."""

    arms: list[Arm]
    pulls: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.arms)
        self.pulls, self.tokens, self.seconds = [0.0] * n, [0.0] * n, [0.0] * n

    def rate(self, arm: int) -> float:
        return self.tokens[arm] / self.seconds[arm] if self.seconds[arm] > 0 else 0.0

    def choose(self, eligible: list[int], exploration: float) -> int:
        untried = [a for a in eligible if self.pulls[a] == 0]
        if untried:
            return untried[0]
        best = max(self.rate(a) for a in eligible) or 1.0
        log_total = math.log(max(sum(self.pulls[a] for a in eligible), 1.0))
        return max(eligible, key=lambda a: self.rate(a) / best
                   + exploration * math.sqrt(log_total / self.pulls[a]))

    def update(self, arm: int, tokens: int, seconds: float, discount: float) -> None:
        for a in range(len(self.arms)):
            self.pulls[a] *= discount
            self.tokens[a] *= discount
            self.seconds[a] *= discount
        self.pulls[arm] += 1.0
        self.tokens[arm] += tokens
        self.seconds[arm] += seconds

    def summary(self) -> dict[str, dict[str, float]]:
        return {str(arm): {"pulls": round(self.pulls[a], 2), "tokens_per_second": round(self.rate(a), 2)}
                for a, arm in enumerate(self.arms)}


_stats: dict[tuple, BanditStats] = {}


def shared_stats(key: tuple, arms: list[Arm]) -> BanditStats:
    """The process's statistics for `key` (e.g. the model) and this arm set, in the current learning scope."""
    full = (learning_scope(), key, tuple(arms))
    if full not in _stats:
        _stats[full] = BanditStats(list(arms))
    return _stats[full]


class BanditDrafter:
    """Drafts each step with the arm UCB picks; rewards it with the step's tokens per second."""

    def __init__(self, drafters: dict[str, Drafter], stats: BanditStats, exploration: float = EXPLORATION,
                 discount: float = DISCOUNT) -> None:
        if exploration < 0:
            raise UserError(f"auto: exploration must be >= 0, got {exploration}")
        if not 0 < discount <= 1:
            raise UserError(f"auto: discount must be in (0, 1], got {discount}")
        unknown = {arm.drafter for arm in stats.arms} - set(drafters) - {NO_DRAFT}
        if unknown:
            raise ValueError(f"arms name drafters that were not given: {sorted(unknown)}")
        self.drafters = drafters
        self.stats = stats
        self.exploration = exploration
        self.discount = discount
        self.pending: tuple[int, float] | None = None  # (arm, when its propose began)
        self.chosen: list[str] = []  # the arm of each step of the current request

    def reset(self, prompt_ids: list[int], sampling: SamplingConfig) -> None:
        for drafter in self.drafters.values():
            drafter.reset(prompt_ids, sampling)
        self.pending = None
        self.chosen = []

    def eligible(self, budget: int) -> list[int]:
        """Arms that differ in what they would draft under `budget` (the smallest budget of each kind)."""
        seen: dict[tuple[str, int], int] = {}
        for a in sorted(range(len(self.stats.arms)), key=lambda a: self.stats.arms[a].budget):
            arm = self.stats.arms[a]
            seen.setdefault((arm.drafter, min(arm.budget, budget)), a)
        return sorted(seen.values())

    def propose(self, context: list[int], budget: int) -> Draft:
        start = time.perf_counter()
        index = self.stats.choose(self.eligible(budget), self.exploration)
        arm = self.stats.arms[index]
        self.pending = (index, start)
        self.chosen.append(str(arm))
        if arm.drafter == NO_DRAFT:
            return Draft()
        return self.drafters[arm.drafter].propose(context, min(arm.budget, budget))

    def observe(self, committed: list[int], logits: torch.Tensor, draft: Draft, accepted: list[int]) -> None:
        if self.pending is not None:
            index, start = self.pending
            self.stats.update(index, len(committed), time.perf_counter() - start, self.discount)
            self.pending = None
        for drafter in self.drafters.values():
            drafter.observe(committed, logits, draft, accepted)
