"""Tiny randomly initialised Llama and Qwen2 models with a word-level tokenizer, built in the tests (no download)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from decodekit.models.loaded import LoadedModel
from decodekit.models.loading import make_backend

EOS = 0
ARCHITECTURES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}


def tiny_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    vocab = {"<eos>": EOS, **{f"w{i}": i for i in range(1, vocab_size)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")


def tiny_model(vocab_size: int = 64, seed: int = 0, layers: int = 2, dtype=torch.float32,
               context: int = 512, backend: str = "transformers", architecture: str = "llama",
               **config) -> LoadedModel:
    """A tiny GQA Llama (4 query heads, 2 KV heads), or with `architecture="qwen2"` a tiny Qwen2 (the same
    shapes, with Qwen2's query / key / value biases and no output-projection bias); `config` overrides the
    config's fields (biases, RoPE scaling, tied embeddings); `backend` as for load_model."""
    torch.manual_seed(seed)
    config_class, model_class = ARCHITECTURES[architecture]
    config = config_class(**{
        "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": context,
        "eos_token_id": EOS, "bos_token_id": None, "pad_token_id": None, "tie_word_embeddings": False,
        **config,
    })
    model = model_class(config).to(dtype).eval()
    with torch.no_grad():  # sharper distributions than the default init, so greedy paths are not all ties
        model.lm_head.weight.mul_(20)
    return LoadedModel(name=f"tiny-{vocab_size}", model=model, tokenizer=tiny_tokenizer(vocab_size),
                       backend=make_backend(model, backend), dtype=dtype, device=torch.device("cpu"))
