"""`--dtype q4` straight from a GGUF file: a transformers model whose layer projections never exist expanded.

Rule: the config and tokenizer come from the GGUF file through transformers (`gguf_file=`); the model is
built on the meta device, then given, in bfloat16, the file's other tensors dequantised by gguf-py (token
embedding, output head or the tied embedding, norms, biases), mapped to transformers' names (Llama's query and
key rows restored to transformers' order, as its GGUF loader does); every parameter but the layer projections
must come from the file, with its shape. The layer projections stay shape-only meta tensors: the lean backend
reads the file's blocks (gguf_int4.py), and transformers' own forward reads them back from the file on first
use (`release_layer_weights`). No float32 copy of the model is made or kept: peak memory is about the
bfloat16 model, and the cache entry (`<cache>/converted/<file>-q4-...`) holds the config, the tokenizer,
`model.safetensors` (the non-layer tensors) and `int4.safetensors` (the packed layers).

The prefill copy: for a model whose layer projections take at most `PREFILL_COPY_LIMIT_BYTES` in bfloat16
(SmolLM2-135M about 0.2 GB, Qwen2.5-0.5B about 0.7 GB; not the 1.5B, about 2.6 GB), the entry also holds
them dequantised (`prefill.safetensors`), and the lean backend reads that copy for a prompt's forward of at
least PREFILL_FROM tokens, where the int4 kernel costs in proportion to its rows and bfloat16 products do
not (models/backend_lean.py says which forwards; the README has the figures). It is loaded mapped, so it
takes memory only once a long prompt was read.

Loading maps the safetensors files, so the embedding's rows are read from disk as tokens use them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from decodekit.errors import UserError
from decodekit.models.backend_lean import unsupported_architecture
from decodekit.models.conversion_cache import cached_entry, entry_key
from decodekit.models.gguf_blocks import dense
from decodekit.models.gguf_int4 import (
    LAYER_TENSORS,
    PERMUTED_ARCHITECTURES,
    int4_layers,
    load_dense_layers,
    load_layers,
    prefill_layers_bytes,
    release_layer_weights,
    save_dense_layers,
    save_layers,
    unpermute_rows,
)

CACHE_FORMAT = 4  # bumped when the entry's layout changes
PREFILL_COPY_LIMIT_BYTES = 2**30  # the largest dense copy of the layer projections an entry holds
LAYER_NAMES = {  # GGUF per-layer tensors that are not layer projections -> transformers' names
    "attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias", "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_gate.bias": "mlp.gate_proj.bias", "ffn_up.bias": "mlp.up_proj.bias", "ffn_down.bias": "mlp.down_proj.bias",
}
GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight",
                "output_norm.weight": "model.norm.weight"}
PREFILL_FILE = "prefill.safetensors"
IGNORED = frozenset({"rope_freqs.weight"})  # llama3 RoPE factors: transformers computes them from the config


def _architecture(reader) -> str:
    field = reader.fields.get("general.architecture")
    return str(field.contents()) if field is not None else "llama"


def _skeleton(config, dtype: torch.dtype):
    """The model on the meta device, with its rotary embedding (a non-persistent buffer) made for real."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(config=model.config)
    return model


def other_tensors(gguf_file: Path, model) -> dict[str, torch.Tensor]:
    """Every parameter of `model` except the layer projections, from `gguf_file`, in the model's dtype."""
    import gguf

    reader = gguf.GGUFReader(gguf_file)
    config = model.config
    permuted = _architecture(reader) in PERMUTED_ARCHITECTURES
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads} if permuted else {}
    projections = {f"{tensor}.weight" for names in LAYER_TENSORS.values() for tensor, _ in names}
    tensors = {}
    for tensor in reader.tensors:
        name = tensor.name
        if name in IGNORED:
            continue
        if name.startswith("blk."):
            _, index, rest = name.split(".", 2)
            if rest in projections:
                continue
            if rest not in LAYER_NAMES:
                raise UserError(f"{gguf_file.name}: tensor {name} has no place in {type(model).__name__}")
            target = f"model.layers.{index}.{LAYER_NAMES[rest]}"
        elif name in GLOBAL_NAMES:
            target = GLOBAL_NAMES[name]
        else:
            raise UserError(f"{gguf_file.name}: tensor {name} has no place in {type(model).__name__}")
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dimensions innermost first
        values = dense(np.asarray(tensor.data), tensor.tensor_type.name, (shape[0], -1)).reshape(shape)
        kind = rest.split(".")[0] if name.startswith("blk.") else ""
        if kind in heads:  # a Llama file's q / k bias, in llama.cpp's interleaved row order
            values = values[torch.from_numpy(unpermute_rows(values.shape[0], heads[kind]))]
        tensors[target] = values.to(model.dtype)
    if "lm_head.weight" not in tensors and config.tie_word_embeddings:
        tensors["lm_head.weight"] = tensors.get("model.embed_tokens.weight")
    expected = {name: tuple(p.shape) for name, p in model.named_parameters(remove_duplicate=False)
                if not any(name.endswith(f"{module}.weight") for names in LAYER_TENSORS.values()
                           for _, module in names)}
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise UserError(f"{gguf_file.name} lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise UserError(f"{gguf_file.name}: {name} has shape {tuple(tensors[name].shape)}, not {shape}")
    return {name: tensors[name] for name in expected}


def _build(gguf_file: Path, dtype: torch.dtype, notice: Callable[[str], None]) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        from safetensors.torch import save_file
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        notice(f"reading {gguf_file.name} once for --dtype q4 (its own blocks, no float32 copy); later loads "
               "use the cache")
        folder, name = str(gguf_file.parent), gguf_file.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = _skeleton(config, dtype)
        reason = unsupported_architecture(model)
        if reason is not None:
            raise UserError(f"--dtype q4 needs the lean backend, which cannot run this model: {reason}")
        others = other_tensors(gguf_file, model)
        tied = config.tie_word_embeddings
        save_file({k: v.contiguous() for k, v in others.items() if not (tied and k == "lm_head.weight")},
                  str(directory / "model.safetensors"))
        dense = [] if prefill_layers_bytes(model) <= PREFILL_COPY_LIMIT_BYTES else None
        save_layers(int4_layers(gguf_file, model, dense), directory / "int4.safetensors")
        if dense is not None:
            save_dense_layers(dense, directory / PREFILL_FILE)
        config.save_pretrained(directory)
        GenerationConfig.from_model_config(config).save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return build


def load_q4(gguf_file: Path, notice: Callable[[str], None], dtype: torch.dtype = torch.bfloat16):
    """(model, tokenizer, layers, prefill) for `gguf_file` on `--dtype q4`: the model with its layer
    projections on the meta device (read back from the file if transformers' own forward runs), the packed
    layers for the lean backend, and the prefill copy of the layers (None for a model above
    `PREFILL_COPY_LIMIT_BYTES`)."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    key = f"{entry_key(gguf_file)}-q4-v{CACHE_FORMAT}-{str(dtype).removeprefix('torch.')}-" \
          f"torch{torch.__version__.replace('+', '-')}"
    directory = cached_entry(key, _build(gguf_file, dtype, notice), notice)
    config = AutoConfig.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = _skeleton(config, dtype)
    with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
        state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (a safetensors handle is no dict)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = GenerationConfig.from_pretrained(directory)
    layers = load_layers(directory / "int4.safetensors")
    if len(layers) != len(model.model.layers):
        raise UserError(f"cache entry {directory} holds {len(layers)} layers, not {len(model.model.layers)}")
    meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if tensor.device.type == "meta" and not _is_projection(name)]
    if meta:
        raise UserError(f"{gguf_file.name}: {', '.join(meta[:3])} not loaded")
    release_layer_weights(model, gguf_file)
    prefill = load_dense_layers(directory / PREFILL_FILE, len(layers)) if (directory / PREFILL_FILE).is_file() \
        else None
    return model.eval(), tokenizer, layers, prefill


def _is_projection(name: str) -> bool:
    return any(name.endswith(f"{module}.weight") for names in LAYER_TENSORS.values() for _, module in names)
