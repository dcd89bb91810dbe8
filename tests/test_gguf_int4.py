"""`--dtype q4`: a GGUF file's own 4-bit weights in the lean backend.

Unit tests write a GGUF file of a tiny model's layer weights quantised with gguf-py (query and key rows
permuted as llama.cpp's converter stores them), give the model exactly the weights that file holds, and check
that unpacking reproduces gguf-py's dequantisation, that the int4 forward agrees with the bfloat16 forward
over the same weights within bfloat16 rounding, and that a file that disagrees with the model is refused.
"""

import gguf
import numpy as np
import pytest
import torch

from decodekit.errors import UserError
from decodekit.models.backend_lean import LeanLlamaBackend
from decodekit.models.gguf_int4 import cached_int4_layers, int4_layers, pack, unpack, unpermute_rows
from decodekit.models.loading import load_model
from tiny import tiny_model

KINDS = {"Q4_0": gguf.GGMLQuantizationType.Q4_0, "Q4_1": gguf.GGMLQuantizationType.Q4_1}
GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}


def permute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter's order for query and key rows: per head, the two rotary halves interleaved."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def quantised_model(tmp_path, kind: str = "Q4_1"):
    """A tiny bfloat16 Llama whose layer weights are exactly those of the GGUF file written next to it."""
    loaded = tiny_model(seed=5, layers=2, dtype=torch.bfloat16)
    model = loaded.model
    config = model.config
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    writer = gguf.GGUFWriter(tmp_path / "tiny.gguf", "llama")
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            for module_name, gguf_name in GGUF_NAMES.items():
                weight = layer.get_submodule(module_name).weight
                stored = weight.float().numpy()
                if gguf_name in heads:
                    stored = permute_rows(stored, heads[gguf_name])
                raw = gguf.quants.quantize(stored, KINDS[kind])
                values = gguf.quants.dequantize(raw, KINDS[kind])
                if gguf_name in heads:
                    values = values[unpermute_rows(values.shape[0], heads[gguf_name])]
                weight.copy_(torch.from_numpy(values))
                writer.add_tensor(f"blk.{index}.{gguf_name}.weight", raw, raw_dtype=KINDS[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return loaded, tmp_path / "tiny.gguf"


@pytest.mark.parametrize("kind", KINDS)
def test_unpack_matches_gguf_dequantisation(kind):
    weight = np.random.default_rng(0).normal(size=(6, 64)).astype(np.float32)
    raw = gguf.quants.quantize(weight, KINDS[kind])
    blocks = unpack(raw, kind)
    assert blocks.values.min() >= 0 and blocks.values.max() <= 15
    assert torch.equal(blocks.dequantised(), torch.from_numpy(gguf.quants.dequantize(raw, KINDS[kind])))


def test_unpermute_rows_undoes_the_converter_order():
    weight = np.arange(24 * 3, dtype=np.float32).reshape(24, 3)
    assert np.array_equal(permute_rows(weight, 3)[unpermute_rows(24, 3)], weight)


def test_int4_product_matches_the_dequantised_weight():
    weight = np.random.default_rng(1).normal(size=(48, 64)).astype(np.float32)
    blocks = unpack(gguf.quants.quantize(weight, KINDS["Q4_1"]), "Q4_1")
    x = torch.randn(5, 64).bfloat16()
    expected = x.float() @ blocks.dequantised().T
    assert (pack(blocks, torch.bfloat16)(x).float() - expected).abs().max() < 0.02 * expected.abs().max()


@pytest.mark.parametrize("kind", KINDS)
def test_q4_forward_agrees_with_bfloat16_over_the_same_weights(tmp_path, kind):
    loaded, path = quantised_model(tmp_path, kind)
    q4 = LeanLlamaBackend(loaded.model, int4_layers=int4_layers(path, loaded.model))
    plain = LeanLlamaBackend(loaded.model)
    assert q4.name == "lean-q4"
    tokens = torch.tensor([3, 9, 27, 5, 11, 40, 2])
    logits = [backend.forward(tokens, torch.arange(7), backend.new_cache()) for backend in (q4, plain)]
    assert (logits[0] - logits[1]).abs().max() < 0.05 * logits[1].abs().max()
    assert torch.equal(logits[0].argmax(-1), logits[1].argmax(-1))


def test_packed_weights_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODEKIT_CACHE", str(tmp_path / "cache"))
    loaded, path = quantised_model(tmp_path)
    notices = []
    first = cached_int4_layers(path, loaded.model, notices.append)
    second = cached_int4_layers(path, loaded.model, notices.append)
    assert len(notices) == 1 and "once" in notices[0]
    fresh = int4_layers(path, loaded.model)
    for layers in (first, second):
        for layer, expected in zip(layers, fresh, strict=True):
            for name, weight in layer.items():
                assert torch.equal(weight.packed, expected[name].packed)
                assert torch.equal(weight.scales_and_zeros, expected[name].scales_and_zeros)


def test_a_file_that_disagrees_with_the_model_is_refused(tmp_path):
    loaded, path = quantised_model(tmp_path)
    with torch.no_grad():
        loaded.model.model.layers[1].mlp.down_proj.weight[0, 0] += 1.0
    with pytest.raises(UserError, match="blk.1.ffn_down.weight does not match"):
        int4_layers(path, loaded.model)


def test_q4_needs_a_gguf_source(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="GGUF file's 4-bit weights"):
        load_model(str(tmp_path), dtype="q4")
    with pytest.raises(UserError, match="lean backend"):
        load_model("smollm2-135m", dtype="q4", backend="transformers")

