"""The quality methods on the embedded SmolLM2-135M (one integration test for the family): USCD and DoLa
under prompt lookup give their own greedy output on a HumanEval-style prompt (DoLa on the 4-bit fast path
too), the counters are reported,
AdaDec runs with a threshold from the model's own entropies, and contrastive decoding against a tiny random
amateur that shares SmolLM2's tokenizer gives its own output under prompt lookup too."""

import pytest

from decodekit.api import generate
from decodekit.session import Session
from test_quality_uscd import HUMANEVAL

pytestmark = pytest.mark.integration


def test_quality_family_on_smollm2(smollm2_f32):
    model, session = smollm2_f32, Session()
    ids = model.encode(HUMANEVAL, chat=False)
    n = 12
    for method, options, counter in (("uscd", {}, "uscd_gate_share"), ("dola", {}, "dola_layer_2_share")):
        alone = generate(ids, model, method=method, max_new_tokens=n, session=session, **options)
        drafted = generate(ids, model, method=method, drafter="pld", max_new_tokens=n, session=session, **options)
        assert drafted.token_ids == alone.token_ids, method
        assert counter in alone.quality
    plain = generate(ids, model, method="ar", max_new_tokens=n, session=session)
    entropies = sorted(e for step in plain.steps for e in step.entropy)
    adadec = generate(ids, model, method="adadec", threshold=entropies[-3], max_new_tokens=n, session=session)
    assert 0 < adadec.quality["adadec_gate_share"] < 1 and len(adadec.token_ids) > 0
    _contrastive_with_a_tiny_amateur_of_the_same_tokenizer(model, ids)


def _contrastive_with_a_tiny_amateur_of_the_same_tokenizer(smollm2_f32, ids):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from decodekit.models.loaded import LoadedModel
    from decodekit.models.loading import make_backend

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=smollm2_f32.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=list(smollm2_f32.eos_token_ids)[0])
    tiny = LlamaForCausalLM(config).eval()
    amateur = LoadedModel(name="tiny-amateur", model=tiny, tokenizer=smollm2_f32.tokenizer,
                          backend=make_backend(tiny, "lean"), dtype=torch.float32, device=torch.device("cpu"))
    alone = generate(ids, smollm2_f32, method="contrastive", amateur_model=amateur, max_new_tokens=16)
    drafted = generate(ids, smollm2_f32, method="contrastive", amateur_model=amateur, drafter="pld",
                       max_new_tokens=16)
    assert drafted.token_ids == alone.token_ids


def test_dola_on_the_4_bit_fast_path(smollm2_q4):
    """lean-q4 takes the same early exits: the final logits unchanged by them, and DoLa under prompt lookup
    equal to DoLa alone."""
    import torch

    model = smollm2_q4
    ids = model.encode(HUMANEVAL, chat=False)
    backend = model.backend
    tokens, positions = torch.tensor(ids[:-1]), torch.arange(len(ids) - 1)
    plain = backend.forward(tokens, positions, backend.new_cache(), last=1)
    with_exits, exits = backend.forward(tokens, positions, backend.new_cache(), last=1, exit_layers=[0, 10])
    assert torch.equal(plain, with_exits) and set(exits) == {0, 10} and exits[10].shape == plain.shape
    alone = generate(ids, model, method="dola", max_new_tokens=12)
    drafted = generate(ids, model, method="dola", drafter="pld", max_new_tokens=12)
    assert drafted.token_ids == alone.token_ids
    assert any(key.startswith("dola_layer_") for key in alone.quality)
