"""Model adapters and loaders, on tiny randomly initialised models saved in tmp_path."""

import pytest
import torch

from decodekit.diffusion.adapters import (LLADA_MASK_ID, llada_to_llama_state_dict, load_diffusion_model)
from decodekit.diffusion.methods import build
from decodekit.errors import UserError

TINY = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


def bidirectional(model, ids):
    """Whether changing the last token changes the first position's logits."""
    other = ids.clone()
    other[0, -1] = (other[0, -1] + 1) % 90
    a = model.forward(ids, torch.ones_like(ids), torch.arange(ids.shape[1]).unsqueeze(0))[0]
    b = model.forward(other, torch.ones_like(ids), torch.arange(ids.shape[1]).unsqueeze(0))[0]
    return not torch.allclose(a[0, 0], b[0, 0])


def test_dream_style_qwen2_directory(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(**TINY, eos_token_id=3)
    config.mask_token_id = 95
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "dream")
    model = load_diffusion_model(str(tmp_path / "dream"))
    assert (model.shift, model.mask_id, model.eos_ids, model.mask_format) == (1, 95, (3,), "2d")
    assert model.supports_cache
    assert bidirectional(model, torch.tensor([[5, 6, 7, 8, 9]]))
    d = build("fast-dllm", {"gen_length": 8, "block_length": 4})(model, [[5, 6, 7], [8, 9]])
    assert not d.canvas.masked().any()
    cached = build("fast-dllm", {"gen_length": 8, "block_length": 4, "cache": "dual"})(model, [[5, 6, 7]])
    assert not cached.canvas.masked().any()


def test_llada_through_llama_classes(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**TINY, eos_token_id=2)
    config.mask_token_id = 94
    llama = LlamaForCausalLM(config)
    llama.save_pretrained(tmp_path / "llada")
    model = load_diffusion_model(str(tmp_path / "llada"))
    assert (model.shift, model.mask_id) == (0, 94)
    assert bidirectional(model, torch.tensor([[5, 6, 7, 8, 9]]))
    d = build("mdm", {"gen_length": 4, "block_length": 4})(model, [[5, 6]])
    assert d.forward_passes.tolist() == [4]
    # LLaDA's own default mask id when the config has none
    config2 = LlamaConfig(**TINY)
    LlamaForCausalLM(config2).save_pretrained(tmp_path / "llada2")
    assert load_diffusion_model(str(tmp_path / "llada2")).mask_id == LLADA_MASK_ID


def test_llada_weight_names_map_onto_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**TINY, tie_word_embeddings=False)
    llama = LlamaForCausalLM(config)
    inverse = {"model.embed_tokens.": "model.transformer.wte.", "model.norm.": "model.transformer.ln_f.",
               "lm_head.": "model.transformer.ff_out.", ".self_attn.o_proj.": ".attn_out.",
               ".self_attn.q_proj.": ".q_proj.", ".self_attn.k_proj.": ".k_proj.", ".self_attn.v_proj.": ".v_proj.",
               ".mlp.gate_proj.": ".ff_proj.", ".mlp.up_proj.": ".up_proj.", ".mlp.down_proj.": ".ff_out.",
               ".input_layernorm.": ".attn_norm.", ".post_attention_layernorm.": ".ff_norm.",
               "model.layers.": "model.transformer.blocks."}
    llada_state = {}
    for key, value in llama.state_dict().items():
        new = key
        for a, b in inverse.items():
            new = new.replace(a, b)
        llada_state[new] = value
    assert any(k.startswith("model.transformer.blocks.0.ff_out") for k in llada_state)
    mapped = llada_to_llama_state_dict(llada_state)
    assert set(mapped) == set(llama.state_dict())
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(mapped, strict=True)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(fresh(ids).logits, llama(ids).logits)


def test_bert_masked_lm_with_tokenizer(tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "red", "blue", "cat"]
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(tmp_path / "bert" / "vocab.txt")).save_pretrained(tmp_path / "bert")
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    model = load_diffusion_model(str(tmp_path / "bert"))
    assert (model.shift, model.mask_id, model.supports_cache) == (0, 4, False)
    assert model.encode("hello world") == [5, 6]
    d = build("fast-dllm", {"gen_length": 4, "block_length": 2})(model, [model.encode("hello world"), [7]])
    assert not d.canvas.masked().any()
    with pytest.raises(UserError):
        build("mdm", {"gen_length": 4, "block_length": 2, "cache": "prefix"})(model, [[5]])


def test_modernbert_masked_lm(tmp_path):
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    config = ModernBertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=64, mask_token_id=4, pad_token_id=0,
                              sep_token_id=3, global_attn_every_n_layers=1)
    ModernBertForMaskedLM(config).save_pretrained(tmp_path / "mbert")
    model = load_diffusion_model(str(tmp_path / "mbert"))
    assert (model.shift, model.mask_id) == (0, 4)
    d = build("mdm", {"gen_length": 4, "block_length": 4})(model, [[5, 6, 7], [8]])
    assert d.forward_passes.tolist() == [4, 4]


def test_loader_errors(tmp_path):
    with pytest.raises(UserError):
        load_diffusion_model(str(tmp_path / "missing"))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UserError):
        load_diffusion_model(str(tmp_path / "odd"))
