"""The UCB bandit over drafters and budgets: choice, discounting, eligible arms, and who observes."""

import pytest
import torch

from decodekit.drafting import bandit
from decodekit.drafting.bandit import NO_DRAFT, Arm, BanditDrafter, BanditStats, shared_stats
from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.sampling import SamplingConfig


class Recorder:
    """A drafter that proposes a fixed chain and records its calls."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.calls = []

    def reset(self, prompt_ids, sampling):
        self.calls.append(("reset", len(prompt_ids)))

    def propose(self, context, budget):
        self.calls.append(("propose", budget))
        return Draft.chain(self.tokens[:budget])

    def observe(self, committed, logits, draft, accepted):
        self.calls.append(("observe", tuple(committed)))


def test_untried_arms_first_then_the_best_rate():
    stats = BanditStats([Arm("a", 1), Arm("b", 1), Arm("c", 1)])
    assert stats.choose([0, 1, 2], exploration=0.0) == 0
    stats.update(0, tokens=2, seconds=1.0, discount=1.0)
    assert stats.choose([0, 1, 2], exploration=0.0) == 1
    stats.update(1, tokens=6, seconds=1.0, discount=1.0)
    stats.update(2, tokens=3, seconds=1.0, discount=1.0)
    assert stats.choose([0, 1, 2], exploration=0.0) == 1
    assert stats.choose([0, 2], exploration=0.0) == 2  # only eligible arms compete


def test_exploration_revisits_a_rarely_pulled_arm():
    stats = BanditStats([Arm("a", 1), Arm("b", 1)])
    stats.update(0, tokens=10, seconds=1.0, discount=1.0)
    stats.update(1, tokens=9, seconds=1.0, discount=1.0)
    for _ in range(50):
        stats.update(0, tokens=10, seconds=1.0, discount=1.0)
    assert stats.choose([0, 1], exploration=0.0) == 0
    assert stats.choose([0, 1], exploration=1.0) == 1


def test_discount_forgets_old_steps():
    stats = BanditStats([Arm("a", 1), Arm("b", 1)])
    stats.update(0, tokens=4, seconds=1.0, discount=0.5)
    stats.update(1, tokens=1, seconds=1.0, discount=0.5)
    assert stats.pulls == [0.5, 1.0] and stats.tokens == [2.0, 1.0]
    assert stats.rate(0) == 4.0  # a ratio of discounted sums: the rate itself is not discounted away


def test_eligible_arms_collapse_under_a_small_budget():
    drafters = {"x": Recorder([1, 2, 3]), "y": Recorder([4])}
    arms = [Arm(NO_DRAFT, 0), Arm("x", 2), Arm("x", 8), Arm("x", 16), Arm("y", 2), Arm("y", 8)]
    auto = BanditDrafter(drafters, BanditStats(arms))
    assert auto.eligible(100) == [0, 1, 2, 3, 4, 5]
    assert auto.eligible(8) == [0, 1, 2, 4, 5]
    assert auto.eligible(2) == [0, 1, 4]


def test_every_drafter_observes_and_the_chosen_arm_is_rewarded():
    drafters = {"x": Recorder([1, 2, 3]), "y": Recorder([4])}
    arms = [Arm(NO_DRAFT, 0), Arm("x", 2), Arm("y", 2)]
    stats = BanditStats(arms)
    auto = BanditDrafter(drafters, stats, exploration=0.0)
    auto.reset([5, 6], SamplingConfig())
    assert auto.propose([5, 6], budget=8) == Draft()  # "none" first: untried arms in order
    auto.observe([7], torch.zeros(1, 10), Draft(), [])
    draft = auto.propose([5, 6, 7], budget=8)
    assert draft.tokens == [1, 2]  # x at budget 2
    auto.observe([1, 2, 9], torch.zeros(3, 10), draft, [0, 1])
    assert stats.pulls[0] == pytest.approx(0.99) and stats.pulls[1] == 1.0 and stats.tokens[1] == 3.0
    assert stats.seconds[1] > 0
    assert auto.chosen == ["none", "x@2"]
    for recorder in drafters.values():
        assert [c for c in recorder.calls if c[0] == "observe"] == [("observe", (7,)), ("observe", (1, 2, 9))]
    assert drafters["y"].calls.count(("propose", 2)) == 0


def test_stats_persist_per_key_and_arm_set(monkeypatch):
    monkeypatch.setattr(bandit, "_stats", {})
    arms = [Arm(NO_DRAFT, 0), Arm("x", 4)]
    first = shared_stats(("model",), arms)
    assert shared_stats(("model",), list(arms)) is first
    assert shared_stats(("other",), arms) is not first
    assert shared_stats(("model",), arms[:1]) is not first


def test_options_are_checked():
    stats = BanditStats([Arm("x", 1)])
    with pytest.raises(UserError):
        BanditDrafter({"x": Recorder([1])}, stats, exploration=-1.0)
    with pytest.raises(UserError):
        BanditDrafter({"x": Recorder([1])}, stats, discount=0.0)
    with pytest.raises(ValueError):
        BanditDrafter({}, stats)
