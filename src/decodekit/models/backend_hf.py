"""Forward pass through any transformers causal LM: new tokens at given positions, with an optional tree mask."""

from __future__ import annotations

import torch

from decodekit.cache import KVCache


class TransformersBackend:
    """Runs `model(...)` with explicit positions and, for draft trees, a 4-D boolean attention mask."""

    name = "transformers"

    def __init__(self, model) -> None:
        self.model = model
        self.device = model.device

    def new_cache(self) -> KVCache:
        return KVCache(config=self.model.config)

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        tree_mask: torch.Tensor | None = None,
        last: int = 0,
    ) -> torch.Tensor:
        """Logits (float32, one row per new token, or only the `last` rows when `last` > 0).

        `tree_mask[i, j]` says whether new token i may attend to new token j; None means causal.
        """
        past = cache.length
        mask = None
        if tree_mask is not None:
            n = input_ids.shape[0]
            full = torch.ones(n, past + n, dtype=torch.bool, device=self.device)
            full[:, past:] = tree_mask.to(self.device)
            mask = full[None, None]
        out = self.model(
            input_ids=input_ids[None].to(self.device),
            position_ids=positions[None].to(self.device),
            past_key_values=cache,
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=last,
        )
        return out.logits[0].float()
