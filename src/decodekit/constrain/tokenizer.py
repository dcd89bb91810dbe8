"""The model's tokenizer as llguidance sees it (`llguidance.LLTokenizer`): each token's bytes, the
end-of-sequence ids and the width of the model's logits, so that a grammar's token masks line up with them.

Rule: built from the Hugging Face fast tokenizer (`llguidance.hf.from_tokenizer`) with `n_vocab` = the width
of the model's output layer (ids past the tokenizer's vocabulary are never allowed) and the model's own
end-of-sequence ids (the tokenizer's when the model names none). Building it walks the whole vocabulary, so
it is made once per loaded model and kept in `LoadedModel.derived`.
"""

from __future__ import annotations

import llguidance
import llguidance.hf

from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel

KEY = "llguidance.tokenizer"


def grammar_tokenizer(model: LoadedModel) -> llguidance.LLTokenizer:
    cached = model.derived.get(KEY)
    if cached is None:
        eos = sorted(model.eos_token_ids)
        if not eos and getattr(model.tokenizer, "eos_token_id", None) is not None:
            eos = [int(model.tokenizer.eos_token_id)]
        if not eos:
            raise UserError(f"model {model.name!r} has no end-of-sequence token, which a grammar needs to stop")
        try:
            cached = llguidance.hf.from_tokenizer(model.tokenizer, n_vocab=model.vocab_size, eos_token=eos)
        except ValueError as error:  # a slow tokenizer, or a decoder llguidance cannot map to bytes
            raise UserError(f"grammars cannot read the tokenizer of model {model.name!r}: {error}") from None
        model.derived[KEY] = cached
    return cached
