"""The bandit over drafters and budgets: per-depth acceptance, match buckets, discounting, coinciding arms,
the scoring of every arm on the committed text, the cost curve's weight, and who observes."""

import pytest
import torch

from decodekit.session import Session
from decodekit.drafting.bandit import (NO_DRAFT, SHRINK, Arm, BanditDrafter, BanditStats, limit, match_bucket,
                                      matched_path, shared_stats)
from decodekit.drafting.cost_curve import CostCurve
from decodekit.drafting.base import Draft
from decodekit.errors import UserError
from decodekit.sampling import SamplingConfig
from decodekit.sampling import Sampler


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


def test_expected_accepted_sums_the_acceptance_rate_of_each_depth():
    stats = BanditStats([Arm("a", 3)])
    assert stats.expected_accepted(0, 2) == pytest.approx(1.0)  # unseen depths: half a token each
    for _ in range(9):
        stats.record(0, depth=3, accepted_length=1)
    stats.record(0, depth=3, accepted_length=3)
    assert stats.reached[0, -1] == [10.0, 10.0, 10.0] and stats.accepted[0, -1] == [10.0, 1.0, 1.0]
    assert stats.expected_accepted(0, 1) == pytest.approx(10.5 / 11)
    assert stats.expected_accepted(0, 3) == pytest.approx(10.5 / 11 + 2 * 1.5 / 11)
    stats.record(0, depth=1, accepted_length=0)  # a shorter draft only counts at the depths it reached
    assert stats.reached[0, -1] == [11.0, 10.0, 10.0] and stats.accepted[0, -1] == [10.0, 1.0, 1.0]


def test_a_match_bucket_leans_on_the_arm_until_it_has_drafts_of_its_own():
    assert [match_bucket(n) for n in (None, 0, 1, 2, 3, 4, 5, 8, 9, 40)] == [0, 1, 1, 2, 3, 3, 4, 4, 5, 5]
    stats = BanditStats([Arm("a", 1)])
    for _ in range(9):
        stats.record(0, depth=1, accepted_length=0, bucket=1)
    stats.record(0, depth=1, accepted_length=1, bucket=5)
    overall = 1.5 / 11
    assert stats.expected_accepted(0, 1) == pytest.approx(overall)
    assert stats.expected_accepted(0, 1, bucket=1) == pytest.approx(SHRINK * overall / (9 + SHRINK))
    assert stats.expected_accepted(0, 1, bucket=5) == pytest.approx((1 + SHRINK * overall) / (1 + SHRINK))
    assert stats.expected_accepted(0, 1, bucket=3) == pytest.approx(overall)


def test_discount_forgets_old_steps():
    stats = BanditStats([Arm("a", 2)])
    stats.record(0, depth=2, accepted_length=2)
    stats.decay(0.5)
    assert stats.reached[0, -1] == [0.5, 0.5] and stats.accepted[0, -1] == [0.5, 0.5]
    assert stats.count(0) == 0.5


def test_matched_path_follows_the_first_matching_child():
    draft = Draft([5, 6, 7, 8, 7], [-1, -1, 0, 1, 1])
    assert matched_path(draft, [6, 7, 9]) == [1, 4]
    assert matched_path(draft, [5, 7, 1]) == [0, 2]
    assert matched_path(draft, [9]) == []


def test_limit_keeps_the_leading_nodes_and_drops_auxiliary_tokens_when_cut():
    draft = Draft([1, 2, 3], [-1, 0, 0], aux_tokens=[9], aux_depths=[1],
                  aux_mask=torch.ones(1, 5, dtype=torch.bool))
    assert limit(draft, 3) is draft
    cut = limit(draft, 2)
    assert cut.tokens == [1, 2] and cut.parents == [-1, 0] and cut.aux_tokens == []


def test_eligible_arms_collapse_when_their_drafts_coincide():
    drafters = {"x": Recorder([1, 2, 3]), "y": Recorder([4])}
    arms = [Arm(NO_DRAFT, 0), Arm("x", 2), Arm("x", 8), Arm("x", 16), Arm("y", 2), Arm("y", 8)]
    auto = BanditDrafter(drafters, BanditStats(arms))
    proposals = {"x": Draft.chain([1, 2, 3]), "y": Draft.chain([4])}
    assert sorted(auto.candidates(proposals, 100)) == [0, 1, 2, 4]  # x@16 drafts what x@8 does; y@8 as y@2
    assert sorted(auto.candidates(proposals, 1)) == [0, 1, 4]
    assert sorted(auto.candidates({"x": Draft(), "y": Draft()}, 100)) == [0]


def test_every_arm_is_scored_on_the_text_that_followed():
    drafters = {"x": Recorder([1, 2, 3]), "y": Recorder([4])}
    arms = [Arm(NO_DRAFT, 0), Arm("x", 1), Arm("x", 3), Arm("y", 1)]
    stats = BanditStats(arms)
    auto = BanditDrafter(drafters, stats, exploration=0.0)
    auto.reset([5, 6], Sampler(SamplingConfig()))
    draft = auto.propose([5, 6], budget=8)
    assert draft.tokens == [1, 2, 3]  # unseen: every depth is worth half a token, every forward costs alike
    assert drafters["x"].calls.count(("propose", 3)) == 1 and drafters["y"].calls.count(("propose", 1)) == 1
    auto.observe([1, 7], torch.zeros(4, 10), draft, [0])
    assert stats.count(1) == 0  # the step's three-deep draft waits for a third token
    draft = auto.propose([5, 6, 1, 7], budget=8)
    auto.observe([4], torch.zeros(4, 10), draft, [])
    assert stats.reached[1, -1] == [1.0] and stats.accepted[1, -1] == [1.0]  # x@1: [1] matched
    assert stats.reached[2, -1] == [1.0, 1.0, 1.0] and stats.accepted[2, -1] == [1.0, 0.0, 0.0]  # 7 is not 2
    assert stats.reached[3, -1] == [1.0] and stats.accepted[3, -1] == [0.0]  # y@1: [4] did not match 1
    assert stats.reached[1, 0] == [1.0]  # Recorder has no match length: its drafts go to bucket 0 as well
    assert len(auto.pending) == 1  # the second step's drafts wait for their text
    assert auto.chosen == ["x@3", "x@3"]
    for recorder in drafters.values():
        assert [c for c in recorder.calls if c[0] == "observe"] == [("observe", (1, 7)), ("observe", (4,))]


def test_the_cost_curve_and_the_overhead_weigh_against_large_drafts():
    drafters = {"x": Recorder([1, 2, 3, 4])}
    arms = [Arm(NO_DRAFT, 0), Arm("x", 1), Arm("x", 4)]
    stats = BanditStats(arms)
    for _ in range(20):  # the first node is always accepted, the later ones never
        stats.record(1, depth=1, accepted_length=1, bucket=0)
        stats.record(2, depth=4, accepted_length=1, bucket=0)
    steep = CostCurve((1, 2, 5), (0.01, 0.011, 0.03))
    auto = BanditDrafter(drafters, stats, steep, exploration=0.0)
    auto.reset([5], Sampler(SamplingConfig()))
    assert auto.propose([5], budget=8).tokens == [1]
    flat = CostCurve((1, 5), (0.01, 0.01))
    auto = BanditDrafter(drafters, stats, flat, exploration=0.0)
    auto.reset([5], Sampler(SamplingConfig()))
    assert auto.propose([5], budget=8).tokens == [1, 2, 3, 4]


def test_stats_persist_per_key_and_arm_set():
    store = Session().store()
    arms = [Arm(NO_DRAFT, 0), Arm("x", 4)]
    first = shared_stats(store, ("model",), arms)
    assert shared_stats(store, ("model",), list(arms)) is first
    assert shared_stats(store, ("other",), arms) is not first
    assert shared_stats(store, ("model",), arms[:1]) is not first
    assert shared_stats(Session().store(), ("model",), arms) is not first  # two sessions share nothing


def test_options_are_checked():
    stats = BanditStats([Arm("x", 1)])
    with pytest.raises(UserError):
        BanditDrafter({"x": Recorder([1])}, stats, exploration=-1.0)
    with pytest.raises(UserError):
        BanditDrafter({"x": Recorder([1])}, stats, discount=0.0)
    with pytest.raises(ValueError):
        BanditDrafter({}, stats)
