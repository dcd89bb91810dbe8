"""Tiny random Llama models whose tokens are single characters, in a tokenizer llguidance reads (byte-level
BPE without merges), so that grammars over characters constrain them; token 0 is end-of-sequence."""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from decodekit.models.loaded import LoadedModel
from tiny import EOS, tiny_model

CHARACTERS = string.ascii_lowercase + string.digits + string.ascii_uppercase + " {}[]:,\""


def char_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    if vocab_size - 1 > len(CHARACTERS):
        raise ValueError(f"at most {len(CHARACTERS) + 1} tokens")
    # byte-level BPE spells a space "Ġ" (GPT-2's byte-to-unicode map; printable ASCII maps to itself)
    vocab = {"<eos>": EOS, **{CHARACTERS[i - 1].replace(" ", "\u0120"): i for i in range(1, vocab_size)}}
    core = Tokenizer(models.BPE(vocab, merges=[], unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")


def char_model(vocab_size: int = 64, seed: int = 0, **options) -> LoadedModel:
    """tiny.tiny_model with the character tokenizer (a space is one of its characters from vocab_size 64)."""
    model = tiny_model(vocab_size=vocab_size, seed=seed, **options)
    model.tokenizer = char_tokenizer(vocab_size)
    return model


def ids(text: str) -> list[int]:
    return [CHARACTERS.index(c) + 1 for c in text]
