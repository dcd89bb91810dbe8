"""Forward pass through any transformers causal LM: new tokens at given positions, with an optional tree mask
and optionally with some decoder layers skipped (self-speculative drafting)."""

from __future__ import annotations

import torch

from decodekit.cache import KVCache
from decodekit.errors import UserError


class _Skipped(torch.nn.Module):
    """Stands in for a skipped decoder layer: hands the hidden states on unchanged and touches no cache."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


class TransformersBackend:
    """Runs `model(...)` with explicit positions and, for draft trees, a 4-D boolean attention mask."""

    name = "transformers"

    def __init__(self, model) -> None:
        self.model = model
        self.device = model.device
        self._skipped = _Skipped()
        config = model.config.get_text_config(decoder=True)
        layer_types = getattr(config, "layer_types", None) or []
        self.sliding_window = config.sliding_window if "sliding_attention" in layer_types else None

    def new_cache(self) -> KVCache:
        # Every layer keeps its whole past, sliding-window layers included, so that truncate and keep work
        # at any length; the sliding window is applied by the attention mask instead.
        return KVCache()

    def _explicit_mask(self, past: int, new: torch.Tensor, positions: torch.Tensor):
        """The 4-D mask over cache + new tokens; for models with sliding-window layers, one per layer type."""
        n = new.shape[0]
        full = torch.ones(n, past + n, dtype=torch.bool, device=self.device)
        full[:, past:] = new.to(self.device)
        full = full[None, None]
        if self.sliding_window is None:
            return full
        key_positions = torch.cat([torch.arange(past), positions.cpu()]).to(self.device)
        within = positions.to(self.device)[:, None] - key_positions[None, :] < self.sliding_window
        return {"full_attention": full, "sliding_attention": full & within}

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        tree_mask: torch.Tensor | None = None,
        last: int = 0,
        skip_layers: frozenset[int] | None = None,
    ) -> torch.Tensor:
        """Logits (float32, one row per new token, or only the `last` rows when `last` > 0).

        `tree_mask[i, j]` says whether new token i may attend to new token j; None means causal.
        `skip_layers`: decoder layer indices to leave out. A skipped layer neither reads nor writes its cache
        entries, so its cache may end up shorter than the kept layers' (the caller truncates). The attention
        mask is then sized by the first kept layer's cache and always passed explicitly, because transformers
        would size it by a layer that may be skipped. The skipped layers are swapped out of the model's layer
        list for the duration of the call, so two threads must not run one model with different skips.
        """
        skip = frozenset(skip_layers or ())
        past = cache.length
        if skip:
            layers = getattr(self.model.get_decoder(), "layers", None)
            if not isinstance(layers, torch.nn.ModuleList):
                raise UserError("layer skipping needs a decoder with a `layers` list; "
                                f"{type(self.model).__name__} has none")
            kept = set(range(len(layers))) - skip
            if not kept or not skip <= set(range(len(layers))):
                raise ValueError(f"cannot skip layers {sorted(skip)} of a model with {len(layers)} layers")
            past = cache.get_seq_length(min(kept))
        mask = None
        if tree_mask is not None or skip:
            n = input_ids.shape[0]
            new = torch.ones(n, n, dtype=torch.bool).tril() if tree_mask is None else tree_mask
            mask = self._explicit_mask(past, new, positions)
        originals = {i: layers[i] for i in skip} if skip else {}
        try:
            for i in skip:
                layers[i] = self._skipped
            out = self.model(
                input_ids=input_ids[None].to(self.device),
                position_ids=positions[None].to(self.device),
                past_key_values=cache,
                attention_mask=mask,
                use_cache=True,
                logits_to_keep=last,
            )
        finally:
            for i, layer in originals.items():
                layers[i] = layer
        return out.logits[0].float()
