"""DoLa: the JSD layer choice and the contrast on hand-made logits, the candidate buckets, the backends'
early-exit logits from the same forward (the default forward unchanged), option checks, and greedy identity
under drafters."""

import math

import pytest
import torch
from tiny import tiny_model

from decodekit.errors import UserError
from decodekit.methods import get_method
from decodekit.quality.dola import candidate_layers, dola_scores
from quality_helpers import ScatterDrafter, run

PROMPTS = [[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]


def test_the_layer_of_largest_jsd_is_contrasted_inside_the_head():
    final = torch.tensor([[0.7, 0.2, 0.08, 0.02]]).log()
    close = torch.tensor([[0.65, 0.25, 0.08, 0.02]]).log()
    far = torch.tensor([[0.1, 0.2, 0.3, 0.4]]).log()
    scores, chosen = dola_scores(final, torch.stack([close, far], dim=1), alpha=0.1)
    assert chosen.tolist() == [1]
    assert scores[0, 3] == float("-inf")  # 0.02 < 0.1 * 0.7
    assert scores[0, :3].tolist() == pytest.approx([math.log(7), 0.0, math.log(0.08 / 0.3)], abs=1e-5)
    scores, chosen = dola_scores(torch.cat([final, far]), torch.stack([torch.cat([close, final]),
                                                                       torch.cat([far, far])], dim=1))
    assert chosen.tolist() == [1, 0]  # per row: the far candidate of row 1 is the final layer itself


def test_candidate_buckets():
    assert candidate_layers("low", 32) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert candidate_layers("high", 32) == [16, 18, 20, 22, 24, 26, 28, 30]
    assert candidate_layers("low", 30, tied_embeddings=True) == [2, 4, 6, 8, 10, 12, 14]
    assert candidate_layers("low", 48) == list(range(0, 20, 2))
    assert candidate_layers("high", 48) == list(range(28, 48, 2))
    assert candidate_layers("3,1", 4) == [1, 3]
    with pytest.raises(UserError):
        candidate_layers("1,9", 4)


@pytest.mark.parametrize("options", [{"layers": "middle"}, {"layers": "1,-2"}, {"alpha": 0}, {"penalty": 0},
                                     {"drafter": "draft"}, {"beta": 1}])
def test_bad_options_fail_before_loading(options):
    with pytest.raises(UserError):
        get_method("dola", options)


def test_early_exits_come_from_the_same_forward_and_leave_the_default_unchanged():
    lean = tiny_model(64, seed=4, layers=4, backend="lean")
    hf = tiny_model(64, seed=4, layers=4, backend="transformers")
    ids, positions = torch.tensor([3, 1, 4, 1, 5, 9]), torch.arange(6)
    plain = lean.backend.forward(ids, positions, lean.backend.new_cache())
    with_exits, exits = lean.backend.forward(ids, positions, lean.backend.new_cache(), exit_layers=[0, 2, 3])
    assert torch.equal(plain, with_exits)  # bit for bit
    reference, hf_exits = hf.backend.forward(ids, positions, hf.backend.new_cache(), exit_layers=[0, 2, 3])
    assert torch.allclose(reference, plain, atol=1e-4)
    for j in (0, 2, 3):
        assert torch.allclose(exits[j], hf_exits[j], atol=1e-4)
        assert not torch.allclose(exits[j], plain, atol=1e-2)
    last, last_exits = lean.backend.forward(ids, positions, lean.backend.new_cache(), last=1, exit_layers=[2])
    plain_last = lean.backend.forward(ids, positions, lean.backend.new_cache(), last=1)
    assert torch.equal(last, plain_last) and torch.allclose(last_exits[2], exits[2][-1:], atol=1e-4)


@pytest.mark.parametrize("backend", ["transformers", "lean"])
def test_greedy_identity_under_drafters(backend):
    model = tiny_model(64, seed=5, layers=4, backend=backend)
    differs = 0
    for prompt in PROMPTS:
        alone = run(model, "dola", prompt, 40, layers="0,1,2")
        assert run(model, "dola", prompt, 40, layers="0,1,2").token_ids == alone.token_ids
        assert sum(alone.quality.values()) == pytest.approx(1.0)  # the chosen layers' shares
        differs += alone.token_ids != run(model, "ar", prompt, 40).token_ids
        assert run(model, "dola", prompt, 40, drafter="pld", layers="0,1,2").token_ids == alone.token_ids
        assert run(model, "dola", prompt, 40, ScatterDrafter(64), layers="0,1,2").token_ids == alone.token_ids
    assert differs > 0


def test_default_layers_and_penalty_run():
    model = tiny_model(64, seed=5, layers=4)
    result = run(model, "dola", PROMPTS[0], 12)
    assert set(result.quality) == {"dola_layer_0_share"}  # low bucket of 4 untied layers: [0]
