"""A lean forward pass for Llama-architecture models (and Qwen2): the same maths as transformers, fewer ops.

Through the transformers module tree, one decoding step of a model this small is dominated by the overhead
of Python and the dispatcher around each of its ~5,000 tensor operations, not by arithmetic. This backend
computes exactly what `LlamaForCausalLM` computes, with the same kernels and roundings (its logits equal
transformers' bit for bit in float32 and bfloat16, packed products aside), in about 28 Python-level tensor
calls per layer:

- q, k and v projections fused into one matrix, gate and up into another (concatenated once at load; the
  transformers module's own parameters become views into them, so the weights are not held twice);
- RMSNorm through `torch.nn.functional.rms_norm`; in float32 with the weight folded in, in lower precisions
  with the weight applied after rounding, as `LlamaRMSNorm` does (the fused kernel rounds only once);
- RoPE from cos / sin tables over positions, applied to q and k of all heads at once;
- a preallocated KV cache (`KVSlots`, one slot per sequence) written in place, and `scaled_dot_product_attention` (GQA without
  repeating keys) over the cache and the new tokens, with one boolean mask built per forward;
- the output head only on the rows asked for (`last`);
- in float32 on a CPU, MKL-packed copies of the weights for products over 8 and 16 rows: a forward of 4 to
  16 new tokens (a draft tree's verification) is padded to the next of these, with padding rows that no real
  token sees. On this project's 2-core machine (`decodekit profile`, 256-token context) a forward of 4
  to 8 new tokens took 38 to 39 ms so, against 44 to 56 ms unpacked, and one of 9 to 16 about 47 ms against
  56 to 70 ms; up to 3 new tokens (26 to 30 ms) unpacked products are faster and are kept. Packed products
  round differently from unpacked ones (logits within about 7e-5). Each packed copy takes about 1.2 times
  the weights' memory, so models over `PACK_LIMIT_BYTES` of weights are not packed; the copies are made by
  the first forward that needs them, not at load.
- with `int4_layers` (`--dtype q4`, gguf_int4.py), the layers' products read the GGUF file's own 4-bit
  weights through PyTorch's int4 CPU kernel, with bfloat16 activations: a one-token step takes about half
  the time of float32's, in a different precision (see gguf_int4.py).
- in bfloat16 on a CPU, the weights (over 4-bit layers, the output head) reordered once for oneDNN
  (onednn.py), made by the first forward; and in reduced precision, attention row by row in forwards of up
  to ROW_LIMIT tokens (row_attention.py; in float32 attention through one native call per layer where the
  kernel builds, native_attention.py), so that a draft tree's rows have one-token decoding's bits where
  the products allow it (precision_probe.py measures it).
- attention in float32 over a float32 KV cache for a reduced-precision model on a CPU without AMX
  (`attention_dtype`): there bfloat16 attention is several times slower (cpu_features.py has the figures),
  and a float32 cache holds the bfloat16 keys and values exactly, so each row still computes what one-token
  decoding does.
- with `prefill_layers` as well (a bfloat16 copy of the 4-bit layers, gguf_q4_model.py), a prompt's
  forward (causal, no tree mask, only the `last` rows' logits asked for) of at least `PREFILL_FROM` new
  tokens multiplies over that copy (reordered for oneDNN on first use): the int4 kernel's time grows in
  proportion to its rows, and bfloat16 products over many rows cost a fraction of it. A forward that
  verifies a draft needs every row's logits, so it always reads the 4-bit weights and verification stays
  exact against one-token decoding; a prompt is read the same way whichever method decodes after it.

What is left of a step is almost all matrix products (`decodekit profile` breaks a forward down by kind of operation).

Supported: `LlamaForCausalLM` with SiLU MLPs, optional attention / MLP biases, tied or untied embeddings,
unquantised weights, and the RoPE types whose frequencies do not depend on the sequence length (default,
linear, llama3, yarn). Dynamic NTK and longrope rescale with the length and are left to the transformers
backend. `Qwen2ForCausalLM` is the same computation with biases on the query, key and value projections
only (none on the output projection or the MLP), its own RoPE base (`rope_theta`, 1e6 for Qwen2.5) and
usually an untied output head; it is supported when no layer uses sliding-window attention
(`use_sliding_window` false, as in Qwen2.5's configs, makes every layer full attention).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from decodekit.errors import UserError
from decodekit.models import onednn
from decodekit.models.cache import KVSlots, SlotCache
from decodekit.models.cpu_features import cpu_has_amx_bf16
from decodekit.models.pages import page_out
from decodekit.models.protocols import SequenceInput
from decodekit.models.native_attention import NativeRowAttention
from decodekit.models.native_build import NativeUnavailable
from decodekit.models.row_attention import ROW_LIMIT, attend_rows, prefix_keys, products_in_blocks, row_keys

STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})
FIRST_CAPACITY = 1024  # cache positions and RoPE table rows made up front; both double when a request needs more
PACKED_ROWS = (8, 16)  # a forward of 4 .. 16 new tokens is padded to the next of these for MKL's packed weights
PAD_FROM = 4  # up to 3 rows, unpacked products cost less than packed ones over 8 rows
PACK_LIMIT_BYTES = 2**30  # larger models are not packed (memory)
ONEDNN_LIMIT_BYTES = 2**32  # bfloat16 weights reordered for oneDNN up to this size (a 2B-parameter model)
PREFILL_FROM = 16  # prompt tokens from which a 4-bit model's prefill copy is faster than its int4 kernel


def rms_norm_rounding_twice(x: torch.Tensor, shape: tuple[int], weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`LlamaRMSNorm` exactly: normalise in float32, round to the input's dtype, then scale."""
    return weight * F.rms_norm(x.float(), shape, None, eps).to(x.dtype)


def unsupported_reason(model) -> str | None:
    """Why the lean backend cannot run `model`, or None when it can."""
    reason = unsupported_architecture(model)
    if reason is not None:
        return reason
    if getattr(model.config, "quantization_config", None) is not None:
        return "its weights are quantised"
    if model.device.type == "meta":
        return "the model's weights are not loaded"
    return None


def unsupported_architecture(model) -> str | None:
    """Why the lean backend cannot compute `model`'s architecture and config (weights aside), or None."""
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    if not isinstance(model, (LlamaForCausalLM, Qwen2ForCausalLM)):
        return f"it implements the Llama and Qwen2 architectures only, not {type(model).__name__}"
    config = model.config
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return "some of its layers use sliding-window attention"
    if config.hidden_act != "silu":
        return f"it implements SiLU MLPs only, not {config.hidden_act!r}"
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type not in STATIC_ROPE_TYPES:
        return f"RoPE type {rope_type!r} rescales with the sequence length"
    return None


class _Layer:
    """One decoder layer's tensors, fused for the lean forward, and (once `pack` ran) their MKL-packed copies
    for each number of rows in `packed_rows`."""

    def __init__(self, layer, int4: dict | None = None) -> None:
        """`int4`: the layer's weights packed in 4 bits (gguf_int4.py), used instead of fusing its own."""
        attn, mlp = layer.self_attn, layer.mlp
        self.input_norm = layer.input_layernorm.weight
        self.post_norm = layer.post_attention_layernorm.weight
        if int4 is None:
            self.qkv = _fuse([attn.q_proj, attn.k_proj, attn.v_proj], "weight")
            self.o = attn.o_proj.weight
            self.gate_up = _fuse([mlp.gate_proj, mlp.up_proj], "weight")
            self.down = mlp.down_proj.weight
        else:
            self.qkv, self.o, self.gate_up, self.down = (int4[key] for key in ("qkv", "o", "gate_up", "down"))
        self.qkv_bias = _fuse([attn.q_proj, attn.k_proj, attn.v_proj], "bias")
        self.gate_up_bias = _fuse([mlp.gate_proj, mlp.up_proj], "bias")
        self.o_bias, self.down_bias = attn.o_proj.bias, mlp.down_proj.bias
        self.qkv_packed = self.o_packed = self.gate_up_packed = self.down_packed = None

    def pack(self, packed_rows: tuple[int, ...]) -> None:
        self.qkv_packed, self.o_packed, self.gate_up_packed, self.down_packed = (
            _pack(weight, packed_rows) for weight in (self.qkv, self.o, self.gate_up, self.down)
        )

    def pack_onednn(self) -> None:
        _reorder_projections(self)


class _DenseProducts:
    """A 4-bit layer's projections as bfloat16 weights (the prefill copy), reordered for oneDNN on first use
    where this torch has it, in `_Layer`'s names so that the forward reads either alike."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        self.qkv, self.o, self.gate_up, self.down = (weights[key] for key in ("qkv", "o", "gate_up", "down"))
        self.qkv_packed = self.o_packed = self.gate_up_packed = self.down_packed = None

    def pack_onednn(self) -> None:
        if self.qkv_packed is None:
            _reorder_projections(self)


def _reorder_projections(holder) -> None:
    """A layer's four projections (`_Layer`, `_DenseProducts`) reordered for oneDNN into its `*_packed`."""
    holder.qkv_packed, holder.o_packed, holder.gate_up_packed, holder.down_packed = (
        onednn.reorder(weight) for weight in (holder.qkv, holder.o, holder.gate_up, holder.down)
    )


def _pack(weight: torch.Tensor, packed_rows: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """`weight` reordered by MKL for products with exactly `rows` input rows, for each of `packed_rows`."""
    return {rows: torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), rows) for rows in packed_rows}


def packable(model) -> bool:
    """Whether the lean backend packs `model`'s weights: float32 on a CPU whose torch has MKL, and weights of
    at most `PACK_LIMIT_BYTES` (each packed copy adds about as much memory again)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return (
        model.device.type == "cpu" and model.dtype == torch.float32 and torch.backends.mkl.is_available()
        and hasattr(torch.ops.mkl, "_mkl_linear") and weights <= PACK_LIMIT_BYTES
    )


def onednn_packable(model, int4: bool) -> bool:
    """Whether the lean backend reorders `model`'s bfloat16 weights for oneDNN (onednn.py): on a CPU whose
    torch has oneDNN, for weights of at most `ONEDNN_LIMIT_BYTES` (the copy adds as much memory again; larger
    models multiply through `F.linear`, whose rows can round apart, README).
    Over 4-bit layers (`int4`) only the output head is reordered, and only its size counts."""
    tensors = [model.lm_head.weight] if int4 else list(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in tensors)
    return (
        model.device.type == "cpu" and model.dtype == torch.bfloat16 and onednn.available()
        and weights <= ONEDNN_LIMIT_BYTES
    )


def attention_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The precision of attention and of the KV cache for a model computing in `dtype`: its own, but float32
    for a reduced-precision model on a CPU without AMX (module docstring)."""
    if dtype != torch.float32 and device.type == "cpu" and not cpu_has_amx_bf16():
        return torch.float32
    return dtype


def _plain_linear(x, weight, packed, bias, rows):
    return F.linear(x, weight, bias)


def _packed_linear(x, weight, packed, bias, rows):
    return torch.ops.mkl._mkl_linear(x, packed[rows], weight, bias, rows)


def onednn_linear(x, weight, packed, bias, rows):
    """A bfloat16 product over the oneDNN-reordered `packed` (onednn.py)."""
    return onednn.linear(x, packed, bias)


def _int4_linear(x, weight, packed, bias, rows):
    product = weight(x)
    return product if bias is None else product + bias


def _fuse(linears: list[torch.nn.Linear], name: str) -> torch.Tensor | None:
    """Concatenate the linears' weights (or biases) along the output dimension and make each module's own
    parameter a view into the result, so the fused tensor costs no extra memory."""
    parts = [getattr(linear, name) for linear in linears]
    if parts[0] is None:  # Llama's config gives all of a block's projections a bias, or none of them
        return None
    fused = torch.cat([part.detach() for part in parts])
    offset = 0
    for linear, part in zip(linears, parts):
        rows = part.shape[0]
        setattr(linear, name, torch.nn.Parameter(fused[offset : offset + rows], requires_grad=False))
        offset += rows
    return fused


class LeanLlamaBackend:
    """Forward for `LlamaForCausalLM` weights with a static KV cache; same signature as TransformersBackend."""

    name = "lean"
    masks_cached = True  # forward takes a wide tree mask over the last cached positions too

    @torch.no_grad()
    def __init__(self, model, pack: bool = True, int4_layers: list[dict] | None = None,
                 row_exact: bool | None = None, prefill_layers: list[dict] | None = None,
                 attention: torch.dtype | None = None, native_attention: bool = True) -> None:
        """`row_exact`: attention row by row in forwards of up to ROW_LIMIT tokens (row_attention.py), so
        that each row has one-token decoding's bits where the products round alike for any number of rows;
        by default in reduced precision only (float32's products round rows apart anyway, about 1e-7, and
        one attention call is cheaper). Off, every forward rounds as transformers' does.
        `prefill_layers`: with `int4_layers`, their dense copies for reading prompts (module docstring).
        `attention`: the precision of attention and the KV cache (by default `attention_dtype`'s).
        `native_attention`: with `row_exact` and float32 attention on a CPU, every forward of up to ROW_LIMIT
        rows attends through the native kernel where it builds (native_attention.py; `native_reason` says why
        not where it does not)."""
        reason = unsupported_reason(model)
        if reason is not None:
            raise UserError(f"the lean backend cannot run this model: {reason}; use backend='transformers'")
        config = model.config
        self.model = model
        self.device = model.device
        self.dtype = model.dtype
        self.attention_dtype = attention or attention_dtype(self.dtype, self.device)
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.rms_norm = F.rms_norm if self.dtype == torch.float32 else rms_norm_rounding_twice
        self.row_exact = self.dtype != torch.float32 if row_exact is None else row_exact
        self.context = int(config.max_position_embeddings)
        self.scale = self.head_dim**-0.5
        self.native_attention, self.native_reason = None, "attention row by row is off (row_exact)"
        if not native_attention:
            self.native_reason = "turned off (native_attention=False)"
        elif self.row_exact and (self.attention_dtype != torch.float32 or self.device.type != "cpu"):
            self.native_reason = "it computes float32 attention on a CPU only"
        elif self.row_exact:
            try:
                self.native_attention, self.native_reason = NativeRowAttention.build(), None
            except NativeUnavailable as why:
                self.native_reason = str(why)
        self.packed_rows = PACKED_ROWS if pack and packable(model) and int4_layers is None else ()
        self.onednn = pack and onednn_packable(model, int4_layers is not None)
        layers = model.model.layers[: config.num_hidden_layers]
        self.int4 = int4_layers is not None  # the layers' products from 4-bit weights (gguf_int4.py)
        if self.int4:
            self.name = "lean-q4"
        self.layers = [_Layer(layer, int4) for layer, int4 in zip(layers, int4_layers or [None] * len(layers),
                                                                 strict=True)]
        if prefill_layers is not None and (not self.int4 or len(prefill_layers) != len(self.layers)):
            raise ValueError("prefill_layers are dense copies of int4_layers, one per layer")
        self.prefill = None if prefill_layers is None else [_DenseProducts(weights) for weights in prefill_layers]
        self.embed = model.model.embed_tokens.weight
        self.norm = model.model.norm.weight
        self.head = model.lm_head.weight
        self.head_packed = None  # packed with the layers, by the first forward that uses them
        rotary = model.model.rotary_emb
        self.inv_freq = rotary.inv_freq.detach().to(device=self.device, dtype=torch.float32)
        self.attention_scaling = float(rotary.attention_scaling)
        self._cos, self._sin = self._rope_tables(min(self.context, FIRST_CAPACITY))

    @property
    def attention_kernel(self) -> str:
        """How forwards of up to ROW_LIMIT rows attend: `native-rows` (native_attention.py), `sdpa-rows` (one
        SDPA call per row, row_attention.py) or `sdpa` (one call per layer, row_exact off)."""
        if not self.row_exact:
            return "sdpa"
        return "native-rows" if self.native_attention is not None else "sdpa-rows"

    def _rope_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin for positions 0 .. length - 1, [length, head_dim] in the model's dtype.

        Computed as transformers does (float32 angles, then cast); the sin table carries rotate_half's sign,
        so that rotating is `x * cos + roll(x, head_dim / 2) * sin`.
        """
        angles = torch.arange(length, device=self.device, dtype=torch.float32)[:, None] * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        cos = angles.cos() * self.attention_scaling
        sin = angles.sin() * self.attention_scaling
        half = self.head_dim // 2
        sin[:, :half].neg_()
        return cos.to(self.dtype), sin.to(self.dtype)

    def new_cache(self) -> SlotCache:
        return self.new_caches(1)[0]

    def new_caches(self, count: int) -> list[SlotCache]:
        store = KVSlots(len(self.layers), self.kv_heads, self.head_dim, limit=self.context, capacity=FIRST_CAPACITY,
                        slots=count, dtype=self.attention_dtype, device=self.device)
        return [store.acquire() for _ in range(count)]

    def _pack_weights(self) -> None:
        """Pack every weight for `packed_rows` (about 0.7 s for SmolLM2-135M): done by the first forward that
        uses them, so that loading and plain decoding neither wait for it nor hold the copies."""
        if self.onednn:
            if not self.int4:
                for layer in self.layers:
                    layer.pack_onednn()
            self.head_packed = onednn.reorder(self.head)
            if self.head.data_ptr() != self.embed.data_ptr():  # an untied head is read through the copy only
                page_out(self.head)
            return
        for layer in self.layers:
            layer.pack(self.packed_rows)
        self.head_packed = _pack(self.head, self.packed_rows)

    def _rows(self, n: int, past: int, limit: int) -> int:
        """How many rows a forward of `n` new tokens computes: the least of `packed_rows` that holds them (and
        fits in the cache), so that packed weights apply; `n` when none does, or when n < `PAD_FROM`."""
        if n >= PAD_FROM:
            for rows in self.packed_rows:
                if n <= rows and past + rows <= limit:
                    return rows
        return n

    def _mask(self, n: int, rows: int, past: int, tree_mask: torch.Tensor | None) -> torch.Tensor | None:
        """[rows, past + rows] boolean: every new token sees the whole cache, and the new tokens per
        `tree_mask` (causal when None); the padding rows past `n` are seen by no token and see the cache and
        themselves. None when one new token sees everything."""
        if tree_mask is None and rows == 1:
            return None
        full = torch.ones(rows, past + rows, dtype=torch.bool, device=self.device)
        new = full[:, past:]
        if tree_mask is None:
            new.tril_()
        else:
            cached = tree_mask.shape[1] - n  # a wide mask also covers the last `cached` cached positions
            if not 0 <= cached <= past:
                raise ValueError(f"a tree mask over {n} new tokens after {past} cached ones must have {n} to "
                                 f"{past + n} columns, got {tree_mask.shape[1]}")
            new[:n, :n] = tree_mask[:, cached:].to(self.device)
            if cached:
                full[:n, past - cached : past] = tree_mask[:, :cached].to(self.device)
        if rows > n:
            new[:, n:] = False
            new[n:].fill_diagonal_(True)
        return full

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: SlotCache,
        tree_mask: torch.Tensor | None = None,
        last: int = 0,
        skip_layers: frozenset[int] | None = None,
        exit_layers: Sequence[int] | None = None,
    ):
        """Logits (float32, one row per new token, or only the `last` rows when `last` > 0).

        `tree_mask[i, j]` says whether new token i may attend to new token j; None means causal. A wide mask
        [n, k + n] also says which of the last k cached positions each new token sees (`masks_cached`). Layers in
        `skip_layers` are passed over (their residual stream is unchanged) and write nothing to the cache.
        With `exit_layers` (DoLa's early exits: j = the residual stream after j layers, 0 = the embeddings),
        returns `(logits, {j: logits of the final norm and head applied to that stream})`, the same rows,
        from the same forward; without it (the default) nothing else is computed.
        """
        if skip_layers and not (frozenset(skip_layers) < frozenset(range(len(self.layers)))):
            raise ValueError(f"cannot skip layers {sorted(skip_layers)} of a model with {len(self.layers)} layers")
        n = input_ids.shape[0]
        past = cache.length
        rows = self._rows(n, past, cache.limit)
        end = past + rows
        cache.reserve(end)
        positions = positions.to(self.device)
        if rows > n:  # padding: copies of the last token at its position, invisible to the real ones
            input_ids = torch.cat([input_ids, input_ids[-1:].expand(rows - n)])
            positions = torch.cat([positions, positions[-1:].expand(rows - n)])
        cos, sin = self._rope(positions)  # [rows, head_dim], broadcast over heads
        mask = self._mask(n, rows, past, tree_mask)
        plan = None
        if self.row_exact and rows <= ROW_LIMIT:
            if mask is not None:
                plan = row_keys(mask)
            elif self.native_attention is not None:  # one token: through the kernel its verification rows take
                plan = prefix_keys(end)
        linear = self._linear(rows)
        weights = self.layers
        if self.prefill is not None and tree_mask is None and last and rows >= PREFILL_FROM:  # a prompt
            weights, linear = self._prefill_products()
        heads, kv_heads, head_dim = self.heads, self.kv_heads, self.head_dim
        rotated_heads = heads + kv_heads
        half = head_dim // 2
        eps, shape, rms_norm, attention = self.eps, (self.embed.shape[1],), self.rms_norm, self.attention_dtype
        x = F.embedding(input_ids.to(self.device), self.embed)
        exits = {0: x} if exit_layers and 0 in exit_layers else {}
        for index, (layer, w) in enumerate(zip(self.layers, weights)):
            if skip_layers and index in skip_layers:
                continue
            h = rms_norm(x, shape, layer.input_norm, eps)
            # [heads + 2 kv_heads, rows, head_dim]: the queries, keys and values of each head
            qkv = linear(h, w.qkv, w.qkv_packed, layer.qkv_bias, rows)
            qkv = qkv.view(rows, heads + 2 * kv_heads, head_dim).transpose(0, 1)
            qk = qkv[:rotated_heads]
            qk = qk * cos + qk.roll(half, -1) * sin
            keys, values = cache.layer_keys[index], cache.layer_values[index]
            keys[0, :, past:end] = qk[heads:]
            values[0, :, past:end] = qkv[rotated_heads:]
            queries = qk[None, :heads].to(attention)
            if plan is None:
                attended = F.scaled_dot_product_attention(
                    queries, keys[:, :, :end], values[:, :, :end], attn_mask=mask, scale=self.scale, enable_gqa=True,
                )
            else:
                attended = attend_rows(queries, keys[:, :, :end], values[:, :, :end], plan, self.scale,
                                       self.native_attention)
            attended = attended.transpose(1, 2).reshape(rows, heads * head_dim).to(self.dtype)
            x = x + linear(attended, w.o, w.o_packed, layer.o_bias, rows)
            h = rms_norm(x, shape, layer.post_norm, eps)
            gate, up = linear(h, w.gate_up, w.gate_up_packed, layer.gate_up_bias, rows).chunk(2, dim=-1)
            x = x + linear(F.silu(gate) * up, w.down, w.down_packed, layer.down_bias, rows)
            if exit_layers and index + 1 in exit_layers:
                exits[index + 1] = x
        cache.length = past + n
        logits = self._head(x, n, rows, last, linear)
        if exit_layers:
            return logits, {j: self._head(exits[j], n, rows, last, linear) for j in exit_layers}
        return logits

    def _linear(self, rows: int):
        """The product for the layers of a forward over `rows` rows (packing the weights on first use)."""
        packed = self.onednn or rows in self.packed_rows
        if packed and self.head_packed is None:
            self._pack_weights()
        if self.int4:
            return _int4_linear
        if self.onednn:
            return onednn_linear
        return _packed_linear if rows in self.packed_rows else _plain_linear

    def _prefill_products(self):
        """The prefill copy's weights and the product over them (oneDNN's reordered copies, made on first
        use, where this torch has oneDNN; `F.linear` elsewhere)."""
        if not onednn.available():
            return self.prefill, _plain_linear
        for products in self.prefill:
            products.pack_onednn()
        return self.prefill, onednn_linear

    def _head(self, x: torch.Tensor, n: int, rows: int, last: int, linear) -> torch.Tensor:
        """The final norm and the output head on the real rows (or the `last` of them), float32: for the last
        layer's stream and for an early exit's."""
        if last:
            x = x[n - last : n]
        x = self.rms_norm(x, (self.embed.shape[1],), self.norm, self.eps)
        if self.onednn:
            return onednn_linear(x, self.head, self.head_packed, None, rows).float()
        if x.shape[0] == rows and rows in self.packed_rows:  # padding rows too (for the packed head), dropped
            return linear(x, self.head, self.head_packed, None, rows)[:n].float()
        return F.linear(x, self.head).float()

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin rows for `positions` (any shape), growing the tables when a position is past them."""
        if int(positions.max()) >= self._cos.shape[0]:
            self._cos, self._sin = self._rope_tables(max(int(positions.max()) + 1, 2 * self._cos.shape[0]))
        return self._cos[positions], self._sin[positions]

    @torch.inference_mode()
    def forward_batch(self, sequences: Sequence[SequenceInput]) -> list[torch.Tensor]:
        """One forward over several sequences, each in its own slot of one cache store, padded to the longest.

        Sequence b's n_b new tokens sit in rows 0 .. n_b - 1 of its block of `rows` (the most new tokens of any
        sequence); the padding rows repeat its last token at its last position, see only themselves and are
        seen by no real token. Keys are read from the slots up to the longest sequence, and each row's mask
        hides what lies past its own sequence, so a sequence's logits are those of its solo forward up to the
        rounding of the larger products (unpacked weights throughout). With `row_exact` each sequence's rows
        attend row by row over its own slot instead, and over products that round each row alike (bfloat16
        and q4 on AMX) its logits are its solo forward's bit for bit.
        """
        if len(sequences) == 1:
            only = sequences[0]
            return [self.forward(only.input_ids, only.positions, only.cache, only.tree_mask, only.last)]
        caches = [s.cache for s in sequences]
        store = caches[0].store
        if any(not isinstance(c, SlotCache) or c.store is not store for c in caches):
            raise ValueError("a batched forward needs caches from one new_caches() call")
        slots = [c.slot for c in caches]
        if len(set(slots)) != len(slots):
            raise ValueError("a batched forward needs a different cache for each sequence")
        batch = len(sequences)
        counts = [s.input_ids.shape[0] for s in sequences]
        rows = max(counts)
        pasts = [c.length for c in caches]
        end = max(pasts) + rows
        if end > store.limit:  # the padding would not fit: each sequence alone
            return [self.forward(s.input_ids, s.positions, s.cache, s.tree_mask, s.last) for s in sequences]
        store.reserve(end)
        device = self.device
        ids = torch.empty(batch, rows, dtype=torch.long)
        positions = torch.empty(batch, rows, dtype=torch.long)
        mask = torch.zeros(batch, 1, rows, end, dtype=torch.bool)
        for b, (sequence, n, past) in enumerate(zip(sequences, counts, pasts)):
            ids[b, :n] = sequence.input_ids
            ids[b, n:] = sequence.input_ids[-1]
            positions[b, :n] = sequence.positions
            positions[b, n:] = sequence.positions[-1]
            mask[b, 0, :n, :past] = True  # real rows see the cache, and the new tokens per their tree mask
            causal = torch.ones(n, n, dtype=torch.bool).tril()
            mask[b, 0, :n, past : past + n] = causal if sequence.tree_mask is None else sequence.tree_mask
            mask[b, 0, n:, past + n : past + rows] = torch.eye(rows - n, dtype=torch.bool)  # padding: itself
        ids, positions, mask = ids.to(device), positions.to(device), mask.to(device)
        plans = None  # attention row by row, each sequence over its own slot, as its solo forward attends
        if self.row_exact and rows <= ROW_LIMIT:
            plans = [row_keys(mask[b, 0, :n, : past + n]) for b, (n, past) in enumerate(zip(counts, pasts))]
        cos, sin = self._rope(positions)  # [batch, rows, head_dim]
        cos, sin = cos[:, None], sin[:, None]
        columns = torch.tensor(pasts, device=device)[:, None] + torch.arange(rows, device=device)  # [batch, rows]
        slot_index = torch.tensor(slots, device=device)[:, None]
        contiguous = slots == list(range(slots[0], slots[0] + batch))
        flat = batch * rows
        linear = self._linear(flat) if self.onednn or self.int4 else _plain_linear  # MKL's packs: fixed rows
        if plans is not None and flat > ROW_LIMIT:
            linear = products_in_blocks(linear)
        heads, kv_heads, head_dim = self.heads, self.kv_heads, self.head_dim
        rotated_heads = heads + kv_heads
        half = head_dim // 2
        eps, shape, rms_norm, attention = self.eps, (self.embed.shape[1],), self.rms_norm, self.attention_dtype
        x = F.embedding(ids.reshape(flat), self.embed)
        for index, layer in enumerate(self.layers):
            h = rms_norm(x, shape, layer.input_norm, eps)
            qkv = linear(h, layer.qkv, layer.qkv_packed, layer.qkv_bias, flat)
            qkv = qkv.view(batch, rows, heads + 2 * kv_heads, head_dim).transpose(1, 2)
            qk = qkv[:, :rotated_heads]
            qk = qk * cos + qk.roll(half, -1) * sin
            layer_keys, layer_values = store.keys[index], store.values[index]  # [slots, kv_heads, capacity, dim]
            layer_keys[slot_index, :, columns] = qk[:, heads:].transpose(1, 2).to(attention)
            layer_values[slot_index, :, columns] = qkv[:, rotated_heads:].transpose(1, 2).to(attention)
            if contiguous:
                keys = layer_keys[slots[0] : slots[0] + batch, :, :end]
                values = layer_values[slots[0] : slots[0] + batch, :, :end]
            else:
                keys = layer_keys[torch.tensor(slots, device=device), :, :end]
                values = layer_values[torch.tensor(slots, device=device), :, :end]
            queries = qk[:, :heads].to(attention)
            if plans is None:
                attended = F.scaled_dot_product_attention(
                    queries, keys, values, attn_mask=mask, scale=self.scale, enable_gqa=True,
                )
            else:
                attended = queries.new_zeros(batch, heads, rows, head_dim)  # padding rows: seen by no one
                for b, (plan, n, past) in enumerate(zip(plans, counts, pasts)):
                    attended[b, :, :n] = attend_rows(queries[b : b + 1, :, :n], keys[b : b + 1, :, : past + n],
                                                     values[b : b + 1, :, : past + n], plan, self.scale,
                                                     self.native_attention)[0]
            attended = attended.transpose(1, 2).reshape(flat, heads * head_dim).to(self.dtype)
            x = x + linear(attended, layer.o, layer.o_packed, layer.o_bias, flat)
            h = rms_norm(x, shape, layer.post_norm, eps)
            gate, up = linear(h, layer.gate_up, layer.gate_up_packed, layer.gate_up_bias, flat).chunk(2, dim=-1)
            x = x + linear(F.silu(gate) * up, layer.down, layer.down_packed, layer.down_bias, flat)
        x = x.view(batch, rows, -1)
        kept = []
        for b, (sequence, cache, n, past) in enumerate(zip(sequences, caches, counts, pasts)):
            cache.length = past + n
            kept.append(x[b, n - sequence.last : n] if sequence.last else x[b, :n])
        sizes = [k.shape[0] for k in kept]
        out = rms_norm(torch.cat(kept), shape, self.norm, eps)
        if not self.onednn:
            return list(F.linear(out, self.head).float().split(sizes))
        head = products_in_blocks(onednn_linear) if plans is not None else onednn_linear
        return list(head(out, self.head, self.head_packed, None, out.shape[0]).float().split(sizes))
