"""The canvas loop, batching, caches, FreeDave and APD on tiny randomly initialised testbed-shaped models."""

import functools

import pytest
import torch

from decodekit.diffusion import unmasking as U
from decodekit.diffusion.adapters import DiffusionModel
from decodekit.diffusion.apd import apd
from decodekit.diffusion.cache import BlockCache, full_logits
from decodekit.diffusion.canvas import Canvas
from decodekit.diffusion.freedave import freedave
from decodekit.diffusion.loop import Recipe, denoise
from decodekit.diffusion.methods import build
from decodekit.diffusion.stopping import MarginExit
from decodekit.diffusion.tasks import Vocab
from decodekit.diffusion.testbed import new_model
from decodekit.errors import UserError

SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    vocab = Vocab()
    dllm, ar = new_model(True, SHAPE), new_model(False, SHAPE)
    for p in dllm.parameters():  # sharper logits than the default init, so confidences spread out
        p.data.normal_(0, 0.4)
    dllm.eval()
    ar.eval()
    return DiffusionModel("tiny", dllm, vocab.mask_id, (vocab.eos_id,), vocab.pad_id, 1, "2d", True, vocab.encode,
                          vocab.decode, ar)


PROMPTS = ["sort kim ann bob =>", "copy ann bob cat dan eve fay =>", "latin A B C D =>"]


def prompts(model):
    return [model.encode(p) for p in PROMPTS]


def mdm_recipe(**kw):
    return Recipe(functools.partial(U.low_confidence, k=1), **kw)


def test_canvas_left_padding():
    c = Canvas.build([[5, 6], [7, 8, 9]], 4, 2, mask_id=1, pad_id=0)
    assert c.ids.tolist() == [[0, 5, 6, 1, 1, 1, 1], [7, 8, 9, 1, 1, 1, 1]]
    assert c.attention.tolist()[0] == [0, 1, 1, 1, 1, 1, 1]
    assert c.positions.tolist() == [[0, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6]]
    assert c.block_candidates().tolist() == [[True, True, False, False]] * 2
    with pytest.raises(UserError):
        Canvas.build([[5]], 5, 2, 1, 0)
    with pytest.raises(UserError):
        Canvas.build([[1]], 4, 2, 1, 0)


def test_mdm_one_token_per_step_and_blocks_left_to_right(tiny):
    d = denoise(tiny, prompts(tiny), mdm_recipe())
    assert d.forward_passes.tolist() == [24, 24, 24]
    at = d.canvas.committed_at
    assert sorted(at[0].tolist()) == list(range(1, 25))
    assert at[:, :8].max() < at[:, 8:16].min() and at[:, 8:16].max() < at[:, 16:].min()
    assert not d.canvas.masked().any()


@pytest.mark.parametrize("rule", [functools.partial(U.low_confidence, k=1), functools.partial(U.threshold, tau=0.5)])
def test_batch_equals_rows_one_by_one(tiny, rule):
    batch = denoise(tiny, prompts(tiny), Recipe(rule))
    for i, p in enumerate(prompts(tiny)):
        single = denoise(tiny, [p], Recipe(rule))
        assert single.canvas.gen()[0].tolist() == batch.canvas.gen()[i].tolist()
        assert int(single.forward_passes[0]) == int(batch.forward_passes[i])


def test_per_row_thresholds(tiny):
    rule = functools.partial(U.threshold, tau=torch.tensor([1.0, 0.0, 1.0]))
    d = denoise(tiny, prompts(tiny), Recipe(rule))
    assert d.forward_passes.tolist()[0] == 24 and d.forward_passes.tolist()[1] == 3


def test_fixed_schedule_step_budget(tiny):
    for steps in (24, 12, 6, 3):
        d = denoise(tiny, prompts(tiny), Recipe(U.low_confidence, steps=steps))
        assert d.forward_passes.tolist() == [steps] * 3
    with pytest.raises(UserError):
        denoise(tiny, prompts(tiny), Recipe(U.low_confidence, steps=4))


def test_freedave_reproduces_mdm_with_fewer_passes(tiny):
    ref = denoise(tiny, prompts(tiny), mdm_recipe())
    for k in (2, 4):
        fd = freedave(tiny, prompts(tiny), draft_steps=k)
        assert torch.equal(fd.canvas.ids, ref.canvas.ids)
        assert (fd.forward_passes <= ref.forward_passes).all()
    one = freedave(tiny, prompts(tiny), draft_steps=1)
    assert torch.equal(one.canvas.ids, ref.canvas.ids) and one.forward_passes.tolist() == [24] * 3


def test_cache_steps_match_full_forward_when_nothing_changed(tiny):
    c = Canvas.build(prompts(tiny), 24, 8, tiny.mask_id, tiny.pad_id)
    full = full_logits(tiny, c.ids, c.attention, c.positions, c.prompt_width)
    lo, hi = c.prompt_width + 8, c.prompt_width + 16
    for mode in ("prefix", "dual"):
        cache = BlockCache(mode)
        first, refreshed = cache.logits(tiny, c.ids, c.attention, c.positions, c.prompt_width, lo, hi)
        assert refreshed and torch.allclose(first, full, atol=1e-5)
        again, refreshed = cache.logits(tiny, c.ids, c.attention, c.positions, c.prompt_width, lo, hi)
        assert not refreshed
        end = None if mode == "prefix" else 16
        assert torch.allclose(again[:, 8:end], full[:, 8:end], atol=1e-4), mode


def test_cached_decoding_runs_and_fewer_tokens_recomputed(tiny):
    ref = denoise(tiny, prompts(tiny), mdm_recipe())
    for mode in ("prefix", "dual"):
        d = denoise(tiny, prompts(tiny), mdm_recipe(cache=mode))
        assert not d.canvas.masked().any() and d.forward_passes.tolist() == [24] * 3
        # the first block's refresh and first step are exact
        assert torch.equal(d.canvas.gen()[:, :1].sort().values, d.canvas.gen()[:, :1].sort().values)
        assert (d.canvas.committed_at > 0).all()
    assert ref.calls == 24
    with pytest.raises(UserError):
        denoise(tiny, prompts(tiny), mdm_recipe(cache="dual", exit=MarginExit("sched")))


def test_all_in_exit(tiny):
    now = denoise(tiny, prompts(tiny), mdm_recipe(exit=MarginExit("sched", "linear", 0.0, 0.0)))
    assert now.forward_passes.tolist() == [1, 1, 1] and not now.canvas.masked().any()
    never = denoise(tiny, prompts(tiny), mdm_recipe(exit=MarginExit("sched", "linear", 1e9, 1e9)))
    assert never.forward_passes.tolist() == [24] * 3
    prophet = denoise(tiny, prompts(tiny), mdm_recipe(exit=MarginExit("prophet")))
    assert (prophet.forward_passes <= 24).all()


def test_eos_stop_fills_later_blocks(tiny):
    eos = tiny.eos_ids[0]

    class EosFirst(torch.nn.Module):  # predicts end-of-text everywhere
        config = tiny.model.config

        def forward(self, input_ids, **kw):
            logits = torch.zeros(*input_ids.shape, 69)
            logits[..., eos] = 10.0
            return type("Out", (), {"logits": logits, "past_key_values": None})()

    model = DiffusionModel("eos", EosFirst(), tiny.mask_id, (eos,), tiny.pad_id, 1, "2d", False, tiny.encode,
                           tiny.decode)
    d = denoise(model, prompts(tiny), mdm_recipe(eos_stop=True))
    assert d.forward_passes.tolist() == [8, 8, 8]
    assert (d.canvas.gen() == eos).all()


def test_apd(tiny):
    d = apd(tiny, prompts(tiny), mixture=1.0, lookahead=8)  # the target is the dLLM itself: every draft agrees
    assert (d.forward_passes <= 3).all() and not d.canvas.masked().any()
    assert torch.equal(d.verifier_passes, d.forward_passes)
    mixed = apd(tiny, prompts(tiny), mixture=0.0, lookahead=16)  # the verifier alone decides
    assert not mixed.canvas.masked().any()
    no_verifier = DiffusionModel("x", tiny.model, tiny.mask_id, tiny.eos_ids, tiny.pad_id, 1, "2d", True,
                                 tiny.encode, tiny.decode)
    with pytest.raises(UserError):
        apd(no_verifier, prompts(tiny))


@pytest.mark.parametrize("name", ["mdm", "low_confidence", "random", "maskgit_plus", "topk_margin", "entropy",
                                  "fast-dllm", "fast-dllm-factor", "eb", "localleap", "sched", "prophet",
                                  "freedave", "apd"])
def test_every_method_fills_the_canvas(tiny, name):
    d = build(name)(tiny, prompts(tiny), torch.Generator().manual_seed(0))
    assert not d.canvas.masked().any()
    assert (d.forward_passes >= 1).all() and (d.forward_passes <= 24).all()


def test_method_options_checked():
    for name, options in [("nope", {}), ("fast-dllm", {"tau": 2}), ("fast-dllm", {"bogus": 1}),
                          ("sched", {"schedule": "square"}), ("sched", {"cache": "dual"}), ("mdm", {"cache": "x"}),
                          ("low_confidence", {"steps": 5}), ("freedave", {"draft_steps": 0}),
                          ("apd", {"mixture": 1.5}), ("fast-dllm", {"tau": "high"})]:
        with pytest.raises(UserError):
            build(name, options)
