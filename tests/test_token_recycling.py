"""Token Recycling: the adjacency matrix, rank statistics, the grown template, drafts, and the matrix file."""

import pytest
import torch

from decodekit.session import Session
from decodekit.drafting import token_recycling as tr
from decodekit.drafting.base import Draft
from decodekit.drafting.cost_curve import CostCurve
from decodekit.drafting.token_recycling import RecycleDrafter, RecycleState, grow_template, shared_state
from decodekit.errors import UserError
from decodekit.sampling import SamplingConfig
from tiny import tiny_model
from decodekit.sampling import Sampler

V = 16


def one_hot_rows(*preferences):
    """Logits rows whose top-k order is the given token list (first = highest)."""
    rows = torch.zeros(len(preferences), V)
    for i, tokens in enumerate(preferences):
        for rank, token in enumerate(tokens):
            rows[i, token] = 100.0 - rank
    return rows


def test_update_writes_topk_rows_and_the_last_row_of_a_token_wins():
    state = RecycleState(V, k=3)
    state.update([5, 7, 5], one_hot_rows([1, 2, 3], [4, 5, 6], [9, 8, 7]))
    assert state.adjacency[5].tolist() == [9, 8, 7]
    assert state.adjacency[7].tolist() == [4, 5, 6]
    assert state.known.nonzero().flatten().tolist() == [5, 7]


def test_record_counts_the_rank_of_each_committed_token_in_known_rows():
    state = RecycleState(V, k=3)
    before_hits, before_trials = state.rank_hits.clone(), state.trials
    state.update([1, 2], one_hot_rows([2, 3, 4], [9, 3, 4]))
    state.record([1, 2, 3, 7])  # 1->2 rank 0; 2->3 rank 1; 3->7 row unknown: not a trial
    assert state.trials == before_trials + 2
    assert (state.rank_hits - before_hits).tolist() == [1.0, 1.0, 0.0]


def test_grown_template_is_a_best_first_tree():
    probs = [0.5, 0.2, 0.1]
    template = grow_template(probs, 10)
    assert len(template.parents) == 10
    assert all(parent < node for node, parent in enumerate(template.parents))
    assert template.gains == sorted(template.gains, reverse=True)
    assert template.gains[:4] == pytest.approx([0.5, 0.25, 0.2, 0.125])  # r0, r0.r0, r1, r0.r0.r0
    assert template.ranks[:3] == [0, 0, 1] and template.parents[:3] == [-1, 0, -1]


def test_draft_expands_the_template_and_drops_subtrees_under_unknown_rows():
    state = RecycleState(V, k=2)
    state.update([1, 2], one_hot_rows([2, 3], [4, 5]))  # rows of 3, 4, 5 unknown
    drafter = RecycleDrafter(state, tree_size=6)
    drafter.template = tr.Template(parents=[-1, 0, -1, 2, 1], ranks=[0, 0, 1, 0, 1], gains=[0.0] * 5)
    drafter.size = 5
    draft = drafter.propose([0, 1], budget=8)
    # root 1 -> 2 (rank 0) -> 4 (rank 0) -> [under 4: unknown]; 1 -> 3 (rank 1) -> [unknown: dropped]
    assert draft.tokens == [2, 4, 3]
    assert draft.parents == [-1, 0, -1]
    assert draft.q is None
    assert len(drafter.propose([0, 1], budget=2)) == 2
    assert len(drafter.propose([0, 9], budget=8)) == 0  # the root's row is unknown


def test_observe_learns_from_every_row_and_prefers_the_accepted_path():
    state = RecycleState(V, k=2)
    drafter = RecycleDrafter(state, tree_size=4)
    drafter.reset([3, 1], Sampler(SamplingConfig()))
    draft = Draft([6, 6], [-1, -1])  # the same token twice: the accepted node's row must win
    logits = one_hot_rows([6, 7], [8, 9], [10, 11])
    drafter.observe([6, 10], logits, draft, accepted=[1])
    assert state.adjacency[1].tolist() == [6, 7]
    assert state.adjacency[6].tolist() == [10, 11]
    assert drafter.last == 10


def test_tree_size_comes_from_the_cost_curve_and_the_budget():
    state = RecycleState(V)
    free = RecycleDrafter(state, CostCurve((1, 256), (1.0, 1.0)), max_tree=40)
    free.reset([1], Sampler(SamplingConfig()))
    assert free.size == 40  # extra tokens cost nothing: the whole template pays
    dear = RecycleDrafter(state, CostCurve((1, 2), (1.0, 2.0)), max_tree=40)
    dear.reset([1], Sampler(SamplingConfig()))
    assert dear.size == 0  # every extra token costs a forward: no tree pays
    with pytest.raises(ValueError):
        RecycleDrafter(state)


def test_matrix_file_round_trip_and_mismatch(tmp_path):
    state = RecycleState(V, k=2)
    state.update([4], one_hot_rows([1, 2]))
    state.record([4, 1])
    path = tmp_path / "m.pt"
    state.save(path)
    loaded = RecycleState(V, k=2)
    loaded.load(path)
    assert torch.equal(loaded.adjacency, state.adjacency) and torch.equal(loaded.known, state.known)
    assert loaded.trials == state.trials and torch.equal(loaded.rank_hits, state.rank_hits)
    with pytest.raises(UserError, match="16 x 2"):
        RecycleState(V, k=3).load(path)
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(UserError):
        RecycleState(V, k=2).load(tmp_path / "junk.pt")


def test_shared_state_persists_per_model_and_uses_the_matrix_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tr.atexit, "register", lambda f: None)
    model = tiny_model(vocab_size=32)
    store = Session().store()
    first = shared_state(store, model)
    assert shared_state(store, model) is first and shared_state(store, model, k=4) is not first
    saved = RecycleState(32)
    saved.update([3], torch.randn(1, 32))
    saved.save(tmp_path / "m.pt")
    store = Session().store()
    state = shared_state(store, model, matrix_file=str(tmp_path / "m.pt"))
    assert torch.equal(state.adjacency, saved.adjacency)
    state.update([5], torch.randn(1, 32))  # learning, then a new request: the file is rewritten
    shared_state(store, model, matrix_file=str(tmp_path / "m.pt"))
    reread = RecycleState(32)
    reread.load(tmp_path / "m.pt")
    assert bool(reread.known[5])
