"""The `draft-tree` method: a same-vocabulary draft model's tree, one draft forward per level, its cache kept
across steps; greedy identity, exact sampling (and a wrong rule failing), option checks, and `auto` with it."""

import itertools

import pytest
import torch

import decodekit.methods.model_drafting as model_drafting
import decodekit.methods.self_tuning as self_tuning
from building import drafter_of
from decodekit.core import DecodeRequest
from decodekit.drafting.base import Draft
from decodekit.drafting.draft_tree import TreeDrafter
from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.sampling import Sampler, SamplingConfig
from decodekit.session import Session
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.decoding import Decoding
from chi_square import pooled_chi_square_p
from test_draft_model import exact_distribution, perturbed, table_model
from tiny import tiny_model
from banning import BanFollowers

PROMPTS = [[5, 9, 3, 17, 22], [1, 2, 3, 4, 5, 6, 7], [40, 41]]


def run(model, prompt, drafter, n=32, sampling=None, processors=(), num_draft=10):
    request = DecodeRequest(list(prompt), n, sampling or SamplingConfig(), num_draft=num_draft,
                            processors=[p() for p in processors])
    return Decoding(model, request, Decoder(drafter), "draft-tree" if drafter else "ar").run()


@pytest.fixture(scope="module")
def target():
    model = tiny_model(64, seed=0, layers=4)
    model.eos_token_ids = frozenset()
    return model


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    """Tiny models' cost curves go to a temporary cache, not the user's."""
    monkeypatch.setenv("DECODEKIT_CACHE", str(tmp_path))


@pytest.mark.parametrize("backend", ["transformers", "lean"])
def test_greedy_identity(backend):
    target = tiny_model(64, seed=0, layers=4, backend=backend)
    target.eos_token_ids = frozenset()
    drafts = [tiny_model(64, seed=1, layers=2, backend=backend), perturbed(target, 0.3, seed=2), target]
    accepted = trees = 0
    for processors in ((), (BanFollowers,)):
        for prompt in PROMPTS:
            reference = run(target, prompt, None, processors=processors).token_ids
            for draft in drafts:  # greedy drafts the top-k tree whatever `siblings` says
                result = run(target, prompt, TreeDrafter(target, draft, tree_size=8), processors=processors)
                assert result.token_ids == reference, (draft.name, processors, prompt)
                accepted += result.accepted_tokens
                trees += sum(1 for step in result.steps if step.parents != list(range(-1, len(step.parents) - 1)))
    assert accepted > 0 and trees > 0  # real trees, some of them accepted


def test_greedy_identity_with_the_cost_curve_and_through_the_method(target, tiny_cache, monkeypatch):
    monkeypatch.setattr(model_drafting, "check_reference", lambda name: None)  # a tiny model has no catalog entry
    draft = perturbed(target, 0.3, seed=2)
    session = Session()
    session_load = lambda name: draft  # noqa: E731  the draft model by name, as the session would load it
    monkeypatch.setattr(session, "model", lambda name, **kwargs: session_load(name))
    for prompt in PROMPTS:
        drafter = drafter_of("draft-tree", target, {"draft_model": "tiny-draft"}, session)
        assert isinstance(drafter, TreeDrafter) and drafter.curve is not None
        result = run(target, prompt, drafter)
        assert result.token_ids == run(target, prompt, None).token_ids
        assert result.draft_forward_passes == drafter.forward_passes > 0


def test_a_tree_beats_the_chain_of_a_weak_draft(target):
    """Counts on the tiny pair: more tokens per target forward than the draft's own chain."""
    from decodekit.drafting.draft_model import DraftModelDrafter, StopRule

    draft = perturbed(target, 0.3, seed=2)
    tree = chain = 0.0
    for prompt in PROMPTS:
        tree += run(target, prompt, TreeDrafter(target, draft, tree_size=8)).stats["mean_accepted"]
        chain += run(target, prompt, DraftModelDrafter(target, draft, StopRule("none", 0.0))).stats["mean_accepted"]
    assert tree > chain


class Recording(TreeDrafter):
    """Records, per proposal, the rows of its sync forward (the committed tokens it had not cached)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync_rows = []

    def _sync(self, context):
        before = self.forward_rows
        logits = super()._sync(context)
        self.sync_rows.append(self.forward_rows - before)
        return logits


def test_the_draft_cache_keeps_the_accepted_path_and_is_never_reprefilled(target):
    draft = perturbed(target, 0.3, seed=3)
    drafter = Recording(target, draft, tree_size=8)
    prompt = PROMPTS[1]
    result = run(target, prompt, drafter, n=40)
    committed = [len(step.committed) for step in result.steps]
    assert drafter.sync_rows[0] == len(prompt)  # the prompt once
    for step, rows in enumerate(drafter.sync_rows[1:]):
        assert 1 <= rows <= committed[step]  # what the last step committed, less the accepted path kept
    kept_paths = sum(1 for step, rows in enumerate(drafter.sync_rows[1:]) if rows < committed[step])
    assert kept_paths > 0  # some accepted paths were kept from the tree levels, not forwarded again
    levels = drafter.forward_passes - len(drafter.sync_rows)
    assert levels > 0 and drafter.forward_rows - sum(drafter.sync_rows) <= levels * drafter.width


def fresh(model, ids):
    return model.backend.forward(torch.tensor(ids), torch.arange(len(ids)), model.backend.new_cache())[-1]


@pytest.mark.parametrize("backend", ["transformers", "lean"])
def test_tree_levels_see_only_their_own_ancestors(backend):
    """Every node's q row equals the softmax of a fresh forward over the context and the node's parent path,
    across steps with part of the tree accepted: the wide masks and the kept cache are right."""
    target = tiny_model(64, seed=0, layers=4, backend=backend)
    draft = perturbed(target, 0.6, seed=4)
    drafter = TreeDrafter(target, draft, tree_size=10, width=3, threshold=0.0)
    drafter.reset(PROMPTS[0], Sampler(SamplingConfig(temperature=4.0, seed=5)))  # flat q: several children
    context = list(PROMPTS[0])
    for keep in (2, 0, 1):
        proposal = drafter.propose(context, 10)
        assert len(proposal) == 10 and max(proposal.depths()) > 1 and not proposal.is_chain
        paths = [[]]
        for node, parent in enumerate(proposal.parents):
            paths.append(paths[parent + 1] + [proposal.tokens[node]])
            expected = (fresh(draft, context + paths[parent + 1]) / 4.0).softmax(dim=-1)
            torch.testing.assert_close(proposal.q[node], expected, atol=1e-4, rtol=1e-3)
        deepest = max(range(len(proposal)), key=lambda n: len(paths[n + 1]))
        context += paths[deepest + 1][:keep] + [63]


# Exact sampling: the chi-square harness of test_draft_model.py (V = 5, repetition penalty, top-k, top-p).

RUNS = {"sample": 2_000, "top": 1_000, "wrong": 600}  # the wrong rule fails by far


class WrongTopSiblings(TreeDrafter):
    """Deterministic top-k siblings handed to the verifier with their q rows: q-based acceptance then assumes
    draws from q that were never made."""

    def propose(self, context, budget):
        draft = super().propose(context, budget)
        if not draft.tokens:
            return draft
        paths = [[]]
        for node, parent in enumerate(draft.parents):
            paths.append(paths[parent + 1] + [draft.tokens[node]])
        logits = torch.stack([self.model.backend.logits(tuple(context + paths[p + 1])) for p in draft.parents])
        q = self.sampler.probs(logits, [paths[p + 1] for p in draft.parents])
        return Draft(draft.tokens, draft.parents, q)


def flat_table_model(seed):
    """The harness's table model with its head scaled down: flatter distributions, so sampled nodes get
    several children."""
    model = table_model(5, seed)
    with torch.no_grad():
        model.model.lm_head.weight.div_(10)
    return model


def sampled_counts(drafter_class, siblings, runs):
    target, draft = flat_table_model(21), flat_table_model(22)
    config = dict(temperature=0.9, top_k=4, top_p=0.9, repetition_penalty=1.3)
    counts: dict[tuple[int, ...], int] = {}
    trees = 0
    drafter = drafter_class(target, draft, tree_size=4, width=3, threshold=0.0, siblings=siblings)  # one for
    for seed in range(runs):  # every run: what it learns (its calibration) carries over, as in a process
        result = run(target, [1, 3], drafter, n=4, sampling=SamplingConfig(seed=seed, **config), num_draft=4)
        counts[tuple(result.token_ids[:3])] = counts.get(tuple(result.token_ids[:3]), 0) + 1
        trees += any(not Draft(s.drafted, s.parents).is_chain for s in result.steps)
    return counts, exact_distribution(target.backend, SamplingConfig(**config)), trees


@pytest.mark.statistical
@pytest.mark.parametrize("siblings", ["sample", "top"])
def test_sampled_trees_have_the_target_distribution(siblings):
    counts, exact, trees = sampled_counts(TreeDrafter, siblings, RUNS[siblings])
    assert trees > RUNS[siblings] // 2
    assert not [o for o in counts if exact[o] == 0]
    assert pooled_chi_square_p(counts, exact, RUNS[siblings]) > 0.001


@pytest.mark.statistical
def test_q_acceptance_on_deterministic_siblings_fails():
    counts, exact, _ = sampled_counts(WrongTopSiblings, "top", RUNS["wrong"])
    assert pooled_chi_square_p(counts, exact, RUNS["wrong"]) < 1e-6


# Options, before any model loads, and auto.

def test_options_are_checked_before_loading(target):
    for options in ({"siblings": "some"}, {"width": 0}, {"depth": "deep"}, {"threshold": 2}, {"tree_size": 0},
                    {"threshold": True}, {"draft_model": "nosuch"}):
        with pytest.raises(UserError):
            get_method("draft-tree", options)
    with pytest.raises(UserError, match="does not take"):
        get_method("draft-tree", {"stop_rule": "none"})
    with pytest.raises(UserError, match="needs --draft-model"):
        drafter_of("draft-tree", target, {"tree_size": 4})
    with pytest.raises(UserError, match="vocabulary"):
        TreeDrafter(target, tiny_model(80, seed=7, layers=1), tree_size=4)
    with pytest.raises(UserError, match="unknown model 'nosuch'"):
        get_method("auto", {"draft_model": "nosuch"})


def test_auto_takes_the_draft_model_as_an_arm(target, tiny_cache, monkeypatch):
    monkeypatch.setattr(model_drafting, "check_reference", lambda name: None)
    monkeypatch.setattr(self_tuning, "check_reference", lambda name: None)
    draft = perturbed(target, 0.2, seed=5)
    session = Session()
    monkeypatch.setattr(session, "model", lambda name, **kwargs: draft)
    plain = drafter_of("auto", target, {"budgets": "2,6"}, session)
    assert "draft-tree" not in plain.drafters and not plain.lazy
    chosen, passes = [], 0
    for prompt, sampling in itertools.product(PROMPTS, (None, SamplingConfig(temperature=0.8, seed=1))):
        drafter = drafter_of("auto", target, {"budgets": "2,6", "draft_model": "tiny-draft"}, session)
        assert "draft-tree" in drafter.drafters and drafter.lazy == {"draft-tree"}
        result = run(target, prompt, drafter, sampling=sampling)
        if sampling is None:
            assert result.token_ids == run(target, prompt, None).token_ids
        assert len(result.token_ids) == 32
        chosen += drafter.chosen
        passes += result.draft_forward_passes
    assert any(arm.startswith("draft-tree@") for arm in chosen) and passes > 0
