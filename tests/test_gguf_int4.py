"""`--dtype q4`: a GGUF file's own quantised weights in the lean backend.

Unit tests write a GGUF file of a tiny model's layer weights quantised with gguf-py (query and key rows
permuted as llama.cpp's converter stores them for Llama; Qwen2 files keep transformers' order), or random
K-quant blocks (gguf-py has no Q4_K / Q6_K quantiser), give the model exactly the weights that file holds,
and check that unpacking reproduces gguf-py's dequantisation bit for bit (int4 forms) or exactly (dense
Q6_K), that the q4 forward agrees with the bfloat16 forward over the same weights within bfloat16 rounding,
and that a file that disagrees with the model is refused.
"""

import gguf
import numpy as np
import pytest
import torch
from tiny import tiny_model

from decodekit.errors import UserError
from decodekit.models import gguf_blocks
from decodekit.models.backend_lean import LeanLlamaBackend
from decodekit.models.gguf_int4 import (
    DenseWeight,
    Int4Sum,
    int4_layers,
    load_dense_layers,
    load_layers,
    pack,
    prefill_layers_bytes,
    release_layer_weights,
    save_dense_layers,
    save_layers,
    unpack,
    unpermute_rows,
)
from decodekit.models.gguf_q4_model import _skeleton, load_q4, other_tensors
from decodekit.models.loading import load_model

GGML = gguf.GGMLQuantizationType

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



def random_kquant(kind: str, rows: int, columns: int, rng) -> np.ndarray:
    """Raw bytes [rows, bytes per row] of random but well-formed blocks: random values, scales and minima,
    with float16 super-scales of realistic size (random bytes there could be NaN or huge)."""
    block, size = gguf.GGML_QUANT_SIZES[GGML[kind]]
    raw = rng.integers(0, 256, size=(rows, columns // block, size), dtype=np.uint8)
    scales = rng.uniform(1e-4, 2e-3, size=(rows, columns // block, 2)).astype(np.float16).view(np.uint8)
    if kind == "Q4_K":  # d, dmin first
        raw[:, :, 0:4] = scales.reshape(rows, columns // block, 4)
    elif kind == "Q6_K":  # d last
        raw[:, :, -2:] = scales[:, :, 0:2]
    else:  # Q5_0 / Q8_0: d first
        raw[:, :, 0:2] = scales[:, :, 0:2]
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_0", "Q8_0"])
def test_int4_forms_reproduce_gguf_dequantisation_bit_for_bit(kind):
    rng = np.random.default_rng(2)
    raw = random_kquant(kind, 8, 512, rng)
    products = gguf_blocks.unpack(raw, kind)
    assert len(products) == (1 if kind == "Q4_K" else 2)
    for product in products:
        assert product.values.min() >= 0 and product.values.max() <= 15
    expected = torch.from_numpy(gguf.quants.dequantize(raw, GGML[kind]))
    assert torch.equal(gguf_blocks.dequantised(products), expected)
    if kind != "Q4_K":  # a file quantised by gguf-py too
        weights = rng.normal(size=(4, 256)).astype(np.float32)
        quantised = gguf.quants.quantize(weights, GGML[kind])
        assert torch.equal(gguf_blocks.dequantised(gguf_blocks.unpack(quantised, kind)),
                           torch.from_numpy(gguf.quants.dequantize(quantised, GGML[kind])))


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_0", "Q8_0"])
def test_the_kernel_computes_with_bfloat16_scales_of_the_exact_form(kind):
    """The int4 kernel's product equals x times `kernel_weight` (the exact form with bfloat16 scales and
    zeros) within the product's own rounding, and that weight differs from gguf-py's by the scale rounding."""
    raw = random_kquant(kind, 48, 256, np.random.default_rng(3))
    products = gguf_blocks.unpack(raw, kind)
    weight = Int4Sum(tuple(pack(p, torch.bfloat16) for p in products))
    x = torch.randn(5, 256).bfloat16()
    effective = gguf_blocks.kernel_weight(products)
    expected = x.float() @ effective.T
    assert (weight(x).float() - expected).abs().max() <= 0.01 * expected.abs().max()
    exact = gguf_blocks.dequantised(products)
    assert 0 < (effective - exact).abs().max() <= 2**-8 * exact.abs().max() * (1 if kind != "Q4_K" else 4)


def test_q6_k_is_read_dense_and_exactly():
    raw = random_kquant("Q6_K", 4, 512, np.random.default_rng(4))
    values = gguf_blocks.dense(raw, "Q6_K", (4, 512))
    assert torch.equal(values, torch.from_numpy(gguf.quants.dequantize(raw, GGML.Q6_K)))
    with pytest.raises(ValueError, match="no exact int4 form"):
        gguf_blocks.unpack(raw, "Q6_K")


QWEN2_KINDS = {  # a Q4_K_M-like mix: fused weights with parts in different forms
    "self_attn.q_proj": "Q5_0", "self_attn.k_proj": "Q5_0", "self_attn.v_proj": "Q8_0",
    "self_attn.o_proj": "Q4_K", "mlp.gate_proj": "Q4_K", "mlp.up_proj": "Q6_K", "mlp.down_proj": "Q6_K",
}


def quantised_qwen2(tmp_path):
    """A tiny bfloat16 Qwen2 (inputs of 256, as K-quants need) whose layer weights are exactly those of the
    GGUF file written next to it, in the formats of QWEN2_KINDS (random blocks; Qwen2 rows unpermuted)."""
    loaded = tiny_model(seed=6, layers=2, dtype=torch.bfloat16, architecture="qwen2", hidden_size=256,
                        intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)
    model = loaded.model
    rng = np.random.default_rng(7)
    writer = gguf.GGUFWriter(tmp_path / "qwen2.gguf", "qwen2")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_()
        for index, layer in enumerate(model.model.layers):
            for module_name, kind in QWEN2_KINDS.items():
                weight = layer.get_submodule(module_name).weight
                raw = random_kquant(kind, *weight.shape, rng)
                weight.copy_(torch.from_numpy(gguf.quants.dequantize(raw, GGML[kind])))
                writer.add_tensor(f"blk.{index}.{GGUF_NAMES[module_name]}.weight", raw, raw_dtype=GGML[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return loaded, tmp_path / "qwen2.gguf"


def test_qwen2_k_quant_forward_agrees_with_bfloat16_over_the_same_weights(tmp_path):
    loaded, path = quantised_qwen2(tmp_path)
    layers = int4_layers(path, loaded.model)
    assert layers[0]["qkv"].layout() == [2]  # Q5_0 q, k and Q8_0 v: one pair of int4 products
    assert layers[0]["gate_up"].layout() == [1, 0]  # Q4_K gate, then the dense Q6_K up
    assert isinstance(layers[0]["down"].segments[0], DenseWeight)
    q4 = LeanLlamaBackend(loaded.model, int4_layers=layers)
    plain = LeanLlamaBackend(loaded.model)
    tokens = torch.tensor([3, 9, 27, 5, 11, 40, 2])
    logits = [backend.forward(tokens, torch.arange(7), backend.new_cache()) for backend in (q4, plain)]
    assert (logits[0] - logits[1]).abs().max() < 0.05 * logits[1].abs().max()
    assert torch.equal(logits[0].argmax(-1), logits[1].argmax(-1))


def test_the_prefill_copy_reads_prompts_and_every_draft_is_verified_over_the_4_bit_weights(tmp_path):
    from decodekit.models.backend_lean import PREFILL_FROM

    loaded, path = quantised_qwen2(tmp_path)
    dense = []
    layers = int4_layers(path, loaded.model, dense)
    assert prefill_layers_bytes(loaded.model) == sum(w.numel() * 2 for layer in dense for w in layer.values())
    save_dense_layers(dense, tmp_path / "prefill.safetensors")
    dense = load_dense_layers(tmp_path / "prefill.safetensors", len(layers))
    for layer, fused in zip(dense, layers):  # the fused weights, dequantised (int4 halves summed in float32)
        assert torch.allclose(fused["qkv"](torch.eye(256).bfloat16()).float(), layer["qkv"].float().T, atol=0.05)
    wrong = [{key: torch.zeros_like(w) for key, w in layer.items()} for layer in dense]
    q4 = LeanLlamaBackend(loaded.model, int4_layers=layers)
    with_copy = LeanLlamaBackend(loaded.model, int4_layers=layers, prefill_layers=dense)
    with_wrong = LeanLlamaBackend(loaded.model, int4_layers=layers, prefill_layers=wrong)
    prompt = (torch.arange(40) * 7 + 3) % 64
    positions = torch.arange(len(prompt))
    read = [b.forward(prompt, positions, b.new_cache(), last=1) for b in (q4, with_copy, with_wrong)]
    assert (read[0] - read[1]).abs().max() < 0.05 * read[0].abs().max()  # the same weights, rounded alike
    assert not torch.equal(read[0], read[2])  # a prompt (only its last logits asked for) reads the copy

    def same_over_both(tokens, **kwargs):
        return torch.equal(*(b.forward(tokens, positions[: len(tokens)], b.new_cache(), **kwargs)
                             for b in (q4, with_wrong)))

    tree = torch.ones(len(prompt), len(prompt), dtype=torch.bool).tril()
    assert same_over_both(prompt, tree_mask=tree, last=1)  # a tree mask: a draft, over the 4-bit weights
    assert same_over_both(prompt)  # every row's logits asked for: a chain draft's verification
    assert same_over_both(prompt[: PREFILL_FROM - 1], last=1)  # a short prompt: the int4 kernel is faster
    with pytest.raises(ValueError, match="dense copies of int4_layers"):
        LeanLlamaBackend(loaded.model, prefill_layers=dense)


def test_packed_layers_survive_the_cache_file(tmp_path):
    loaded, path = quantised_qwen2(tmp_path)
    layers = int4_layers(path, loaded.model)
    save_layers(layers, tmp_path / "int4.safetensors")
    x = torch.randn(3, 256).bfloat16()
    for layer, expected in zip(load_layers(tmp_path / "int4.safetensors"), layers, strict=True):
        for name, weight in layer.items():
            assert weight.layout() == expected[name].layout() and torch.equal(weight(x), expected[name](x))


def write_whole_qwen2(loaded, path, tmp_path):
    """The tiny Qwen2's GGUF with its other tensors too (embedding, head, norms, biases in F32)."""

    reader = gguf.GGUFReader(path)
    writer = gguf.GGUFWriter(tmp_path / "whole.gguf", "qwen2")
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_dtype=tensor.tensor_type)
    model = loaded.model
    names = {"model.embed_tokens.weight": "token_embd.weight", "lm_head.weight": "output.weight",
             "model.norm.weight": "output_norm.weight"}
    for index in range(len(model.model.layers)):
        names.update({f"model.layers.{index}.input_layernorm.weight": f"blk.{index}.attn_norm.weight",
                      f"model.layers.{index}.post_attention_layernorm.weight": f"blk.{index}.ffn_norm.weight"})
        names.update({f"model.layers.{index}.self_attn.{x}_proj.bias": f"blk.{index}.attn_{x}.bias" for x in "qkv"})
    parameters = dict(model.named_parameters())
    for name, gguf_name in names.items():
        writer.add_tensor(gguf_name, parameters[name].detach().float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / "whole.gguf"


def test_other_tensors_come_from_the_file_under_transformers_names(tmp_path):
    loaded, path = quantised_qwen2(tmp_path)
    whole = write_whole_qwen2(loaded, path, tmp_path)
    skeleton = _skeleton(loaded.model.config, torch.bfloat16)
    tensors = other_tensors(whole, skeleton)
    parameters = dict(loaded.model.named_parameters())
    assert "model.layers.0.self_attn.q_proj.bias" in tensors and "lm_head.weight" in tensors
    assert not any(name.endswith("proj.weight") for name in tensors)
    for name, tensor in tensors.items():
        assert torch.equal(tensor, parameters[name].detach()), name
    with pytest.raises(UserError, match="lacks lm_head.weight, model.embed_tokens.weight"):
        other_tensors(path, skeleton)  # the layer weights alone


def test_released_layer_weights_are_read_back_from_the_file(tmp_path):
    loaded, path = quantised_qwen2(tmp_path)
    model = loaded.model
    tokens = torch.tensor([[3, 9, 27]])
    with torch.no_grad():
        expected = model(tokens).logits
    q4 = LeanLlamaBackend(model, int4_layers=int4_layers(path, model))
    before = q4.forward(tokens[0], torch.arange(3), q4.new_cache())
    release_layer_weights(model, path)
    assert model.model.layers[0].mlp.down_proj.weight.device.type == "meta"
    assert torch.equal(q4.forward(tokens[0], torch.arange(3), q4.new_cache()), before)
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, expected)  # read back on first use
    assert model.model.layers[0].mlp.down_proj.weight.device.type == "cpu"


@pytest.mark.integration
def test_q4_from_the_embedded_file_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODEKIT_CACHE", str(tmp_path / "cache"))
    from decodekit.models.catalog import CATALOG, gguf_path
    from decodekit.models.conversion_cache import cache_root

    path = gguf_path(CATALOG["smollm2-135m"], cache_root())
    notices = []
    model, _, layers, prefill = load_q4(path, notices.append)
    again, _, cached, prefill_again = load_q4(path, notices.append)
    assert prefill is not None and len(prefill) == len(layers)  # 0.2 GB: under the prefill copy's limit
    assert all(torch.equal(a[k], b[k]) for a, b in zip(prefill, prefill_again) for k in a)
    assert len(notices) == 1 and "once" in notices[0]
    assert model.model.layers[0].self_attn.q_proj.weight.device.type == "meta"
    for layer, expected in zip(cached, layers, strict=True):
        for name, weight in layer.items():
            assert weight.layout() == expected[name].layout()
            assert all(torch.equal(t, expected[name].tensors()[k]) for k, t in weight.tensors().items())
    assert torch.equal(again.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_released_layer_weights_without_a_file_refuse_transformers_forward(tmp_path):
    loaded, path = quantised_qwen2(tmp_path)
    LeanLlamaBackend(loaded.model, int4_layers=int4_layers(path, loaded.model))
    release_layer_weights(loaded.model)
    with pytest.raises(UserError, match="--dtype q4"):
        loaded.model(torch.tensor([[3, 9, 27]]))


def test_an_unsupported_layer_format_is_refused(tmp_path):
    loaded, _ = quantised_model(tmp_path)
    writer = gguf.GGUFWriter(tmp_path / "q5_1.gguf", "llama")
    for index in range(2):
        for module_name, gguf_name in GGUF_NAMES.items():
            weight = loaded.model.model.layers[index].get_submodule(module_name).weight.detach().float().numpy()
            writer.add_tensor(f"blk.{index}.{gguf_name}.weight", gguf.quants.quantize(weight, GGML.Q5_1),
                              raw_dtype=GGML.Q5_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match="blk.0.attn_q.weight is Q5_1"):
        int4_layers(tmp_path / "q5_1.gguf", loaded.model)
