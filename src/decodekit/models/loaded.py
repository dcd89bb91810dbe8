"""A loaded model: weights, tokenizer, the forward backend and what the decoding loop needs to know."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from decodekit.errors import UserError
from decodekit.models.protocols import Backend


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    tokenizer: object
    backend: Backend  # TransformersBackend, a lean backend or LlamaCppBackend (models/protocols.py)
    dtype: torch.dtype
    device: torch.device
    load_seconds: float = 0.0
    precision: str = ""  # the --dtype it was loaded with: the dtype's name, q4 (gguf_int4.py), or gguf (llama.cpp)
    eos_token_ids: frozenset[int] = field(init=False)
    # what is costly to derive from the model and the same for every request (a grammar engine's view of
    # the tokenizer), built by its user on first need and kept for the model's lifetime
    derived: dict[str, object] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.precision = self.precision or str(self.dtype).removeprefix("torch.")
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        self.eos_token_ids = frozenset(ids)

    @property
    def context_length(self) -> int:
        config = self.model.config
        config = getattr(config, "text_config", config)
        length = int(getattr(config, "max_position_embeddings", 2048))
        limit = getattr(self.backend, "context_limit", None)  # a backend whose caches hold fewer positions
        return min(length, limit) if limit else length

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, prompt: str, chat: bool | None = None) -> list[int]:
        """Token ids of a prompt; with `chat` (default: when the model has a chat template) as a user turn."""
        if not prompt.strip():
            raise UserError("the prompt is empty")
        use_chat = self.has_chat_template if chat is None else chat
        if use_chat:
            if not self.has_chat_template:
                raise UserError(f"model {self.name!r} has no chat template: send the prompt raw")
            encoded = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
            )
            ids = list(encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded)
        else:
            ids = self.tokenizer(prompt)["input_ids"]
        return [int(i) for i in ids]

    def check_fits(self, prompt_length: int, max_new_tokens: int) -> None:
        if prompt_length >= self.context_length:
            raise UserError(
                f"the prompt has {prompt_length} tokens; model {self.name!r} takes at most "
                f"{self.context_length - 1} prompt tokens"
            )
