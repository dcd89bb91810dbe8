"""Forward pass through any transformers causal LM: new tokens at given positions, with an optional tree mask
and optionally with some decoder layers skipped (self-speculative drafting).

A batched forward pads the sequences' caches into one transformers batch (right-padded keys, hidden by the
attention mask), runs one model call, and puts each sequence's keys and values back into its own cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decodekit.errors import UserError
from decodekit.models.cache import KVCache
from decodekit.models.protocols import SequenceInput


class _Skipped(torch.nn.Module):
    """Stands in for a skipped decoder layer: hands the hidden states on unchanged and touches no cache."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


class TransformersBackend:
    """Runs `model(...)` with explicit positions and, for draft trees, a 4-D boolean attention mask."""

    name = "transformers"
    masks_cached = True  # forward takes a wide tree mask over the last cached positions too
    packed_rows: tuple[int, ...] = ()

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

    def new_caches(self, count: int) -> list[KVCache]:
        return [KVCache() for _ in range(count)]

    def _explicit_mask(self, past: int, new: torch.Tensor, positions: torch.Tensor):
        """The 4-D mask over cache + new tokens; for models with sliding-window layers, one per layer type."""
        n, width = new.shape
        if not n <= width <= past + n:
            raise ValueError(f"a tree mask over {n} new tokens after {past} cached ones must have {n} to "
                             f"{past + n} columns, got {width}")
        full = torch.ones(n, past + n, dtype=torch.bool, device=self.device)
        full[:, past + n - width :] = new.to(self.device)  # a wide mask covers the last cached positions too
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
        exit_layers: Sequence[int] | None = None,
    ):
        """Logits (float32, one row per new token, or only the `last` rows when `last` > 0); with
        `exit_layers`, `(logits, {j: the final norm and head applied to the hidden state after j layers})`
        from the same forward (`output_hidden_states`; 0 = the embeddings).

        `tree_mask[i, j]` says whether new token i may attend to new token j; None means causal. A wide mask
        [n, k + n] also says which of the last k cached positions each new token sees (`masks_cached`).
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
                **({"output_hidden_states": True} if exit_layers else {}),
            )
        finally:
            for i, layer in originals.items():
                layers[i] = layer
        if exit_layers:
            return out.logits[0].float(), {j: self._exit(out.hidden_states[j][0], last) for j in exit_layers}
        return out.logits[0].float()

    def _exit(self, hidden: torch.Tensor, last: int) -> torch.Tensor:
        if last:
            hidden = hidden[-last:]
        decoder = self.model.get_decoder()
        return self.model.get_output_embeddings()(decoder.norm(hidden)).float()

    @torch.inference_mode()
    def forward_batch(self, sequences: Sequence[SequenceInput]) -> list[torch.Tensor]:
        """One model call over several sequences, each with its own cache length, positions and tree mask.

        The caches are copied into one batch, right-padded to the longest; sequence b's new tokens follow at
        columns `longest .. longest + rows`, its padding keys and rows hidden by the 4-D mask. Afterwards each
        cache holds its own past followed by its new tokens, as after a solo forward. Models with
        sliding-window layers and multi-part caches run each sequence alone.
        """
        if len(sequences) == 1 or self.sliding_window is not None:
            return [self.forward(s.input_ids, s.positions, s.cache, s.tree_mask, s.last) for s in sequences]
        caches = [s.cache for s in sequences]
        counts = [s.input_ids.shape[0] for s in sequences]
        pasts = [c.length for c in caches]
        longest, rows, batch = max(pasts), max(counts), len(sequences)
        device = self.device
        ids = torch.zeros(batch, rows, dtype=torch.long)
        positions = torch.zeros(batch, rows, dtype=torch.long)
        mask = torch.zeros(batch, 1, rows, longest + rows, dtype=torch.bool)
        for b, (sequence, n, past) in enumerate(zip(sequences, counts, pasts)):
            ids[b, :n], ids[b, n:] = sequence.input_ids, sequence.input_ids[-1]
            positions[b, :n], positions[b, n:] = sequence.positions, sequence.positions[-1]
            mask[b, 0, :n, :past] = True
            causal = torch.ones(n, n, dtype=torch.bool).tril()
            mask[b, 0, :n, longest : longest + n] = causal if sequence.tree_mask is None else sequence.tree_mask
            mask[b, 0, n:, longest + n :] = torch.eye(rows - n, dtype=torch.bool)
        joined = KVCache()
        if longest:
            reference = caches[pasts.index(longest)]
            for index, layer in enumerate(reference.layers):
                empty = layer.keys[:, :, :0]
                keys = [c.layers[index].keys if c.length else empty for c in caches]
                values = [c.layers[index].values if c.length else empty for c in caches]
                joined.update(_right_pad(keys, longest), _right_pad(values, longest), index)
        out = self.model(input_ids=ids.to(device), position_ids=positions.to(device), past_key_values=joined,
                         attention_mask=mask.to(device), use_cache=True)
        results = []
        for b, (sequence, cache, n, past) in enumerate(zip(sequences, caches, counts, pasts)):
            for index, layer in enumerate(joined.layers):
                new_keys = layer.keys[b : b + 1, :, longest : longest + n]
                new_values = layer.values[b : b + 1, :, longest : longest + n]
                if past:
                    cache.layers[index].keys = torch.cat([cache.layers[index].keys, new_keys], dim=-2)
                    cache.layers[index].values = torch.cat([cache.layers[index].values, new_values], dim=-2)
                else:
                    cache.update(new_keys.clone(), new_values.clone(), index)
            logits = out.logits[b, :n]
            results.append((logits[n - sequence.last :] if sequence.last else logits).float())
        return results


def _right_pad(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    """[1, heads, t_b, dim] tensors -> [batch, heads, length, dim], zeros after each t_b."""
    first = tensors[0]
    out = first.new_zeros(len(tensors), first.shape[1], length, first.shape[3])
    for b, tensor in enumerate(tensors):
        out[b, :, : tensor.shape[2]] = tensor[0]
    return out
