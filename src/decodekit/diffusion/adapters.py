"""Model adapters: what the canvas loop needs to know about a masked diffusion LM, and the loaders.

A ``DiffusionModel`` holds the network and its contract:
- ``mask_id``, ``eos_ids``, ``pad_id``;
- ``shift``: 1 when the logits at position i-1 predict token i (Dream, and this repository's testbed, both
  started from autoregressive Qwen2), 0 when position i predicts token i (LLaDA, BERT-style MLMs);
- ``mask_format``: ``"2d"`` (a [B, N] padding mask plus position ids: transformers Qwen2/Llama run with
  ``is_causal=False``, ``*ForMaskedLM``), ``"4d"`` (Dream's remote code: a boolean [B, 1, N, N] mask and
  ``tok_idx`` position ids, or ``"full"`` without padding), ``"2d-nopos"`` (LLaDA's remote code:
  ``model(input_ids, attention_mask)``);
- ``supports_cache``: whether ``forward`` accepts a transformers ``DynamicCache`` of keys and values (the
  transformers decoders do; remote code and MLMs do not);
- ``encode`` / ``decode`` for text, and an optional ``verifier`` (a causal LM with the same vocabulary, APD).

Loaders (``load_diffusion_model``) take the catalog name ``dllm-testbed`` (or a directory that ``train.py``
wrote), a local transformers directory or a hub id:
- Dream-style: ``model_type`` ``qwen2`` -> ``Qwen2ForCausalLM`` with ``is_causal=False``, shift 1;
  ``model_type`` ``Dream`` (hub ``Dream-org/Dream-v0-*``) -> remote code, 4-D mask, shift 1, mask 151666.
- LLaDA: ``model_type`` ``llada`` (hub ``GSAI-ML/LLaDA-8B-*``) -> remote code, mask 126336, EOS 126081 and
  EoT 126348, shift 0; ``model_type`` ``llama`` -> transformers' ``LlamaForCausalLM`` with
  ``is_causal=False`` (``llada_to_llama_state_dict`` renames LLaDA's OLMo-style weight names to Llama's).
- Any ``*ForMaskedLM`` (BERT, ModernBERT, ...): ``AutoModelForMaskedLM``, the tokenizer's mask id, shift 0.
transformers 5's native ``DiffusionGemmaForBlockDiffusion`` is not adapted: its forward denoises a canvas
conditioned on a prompt KV cache and a self-conditioning signal carried between steps, which is not the
(tokens -> logits) contract the rules here assume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from decodekit.errors import UserError

DREAM_MASK_ID, DREAM_EOS_IDS = 151666, (151643,)
LLADA_MASK_ID, LLADA_EOS_IDS = 126336, (126081, 126348)
MASK_FORMATS = ("2d", "4d", "2d-nopos")


@dataclass(frozen=True)
class DiffusionModel:
    name: str
    model: Any
    mask_id: int
    eos_ids: tuple[int, ...]
    pad_id: int
    shift: int
    mask_format: str
    supports_cache: bool
    encode: Callable[[str], list[int]] = field(repr=False)
    decode: Callable[[list[int]], str] = field(repr=False)
    verifier: Any = None

    def forward(self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, past=None):
        """Raw logits [B, n, V] for ``ids`` [B, n]; with ``past`` (keys and values of other canvas positions,
        already rotated), ``attention`` covers the cached positions first and then ``ids``. Returns
        (logits, the cache transformers filled, or None)."""
        if self.mask_format == "2d":
            kwargs = dict(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=past is not None)
            if past is not None:
                kwargs["past_key_values"] = past
            out = self.model(**kwargs)
            return out.logits, getattr(out, "past_key_values", None)
        if past is not None:
            raise UserError(f"{self.name}: this model's forward takes no KV cache; use --option cache=none")
        if self.mask_format == "4d":
            if bool(attention.all()):
                out = self.model(ids, attention_mask="full", position_ids=None)
            else:
                square = attention.bool()[:, None, None, :] & attention.bool()[:, None, :, None]
                out = self.model(ids, attention_mask=square, position_ids=positions)
            return out.logits, None
        out = self.model(ids, attention_mask=attention)
        return out.logits, None


def _read_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: no readable config.json ({error})") from None


def _tokenizer_functions(source: str):
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception:  # a weights-only directory: token ids in and out, written as space-separated integers
        return None, (lambda text: [int(t) for t in text.split()]), (lambda ids: " ".join(str(int(i)) for i in ids))
    return tokenizer, (lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]), \
        (lambda ids: tokenizer.decode(ids, skip_special_tokens=True))


def testbed_model(directory: Path | None = None) -> DiffusionModel:
    from decodekit.diffusion.tasks import EOS, Vocab
    from decodekit.diffusion.testbed import TESTBED_NAME, load_part

    vocab = Vocab()
    dllm = load_part("dllm", directory)
    verifier = load_part("ar", directory)
    return DiffusionModel(TESTBED_NAME, dllm, vocab.mask_id, (vocab.id(EOS),), vocab.pad_id, 1, "2d", True,
                          vocab.encode, vocab.decode, verifier)


def dream_model(model, name: str, mask_id: int | None = None, eos_ids=None, pad_id=None, encode=None,
                decode=None, verifier=None) -> DiffusionModel:
    """A transformers Qwen2 decoder as a Dream-style dLLM: attention made bidirectional, logits shifted."""
    model.config.is_causal = False
    for module in model.modules():  # attention layers read their own flag
        if hasattr(module, "is_causal"):
            module.is_causal = False
    config = model.config
    mask_id = mask_id if mask_id is not None else getattr(config, "mask_token_id", None) or DREAM_MASK_ID
    eos = tuple(eos_ids) if eos_ids is not None else _eos(config, DREAM_EOS_IDS)
    return DiffusionModel(name, model.eval(), mask_id, eos, pad_id if pad_id is not None else eos[0], 1, "2d", True,
                          encode or _ids_in, decode or _ids_out, verifier)


def llada_llama_model(model, name: str, mask_id: int = LLADA_MASK_ID, eos_ids=LLADA_EOS_IDS, pad_id=None,
                      encode=None, decode=None) -> DiffusionModel:
    """A transformers Llama decoder as LLaDA: bidirectional attention, no logits shift."""
    model.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    return DiffusionModel(name, model.eval(), mask_id, tuple(eos_ids), pad_id if pad_id is not None else eos_ids[0],
                          0, "2d", True, encode or _ids_in, decode or _ids_out)


def masked_lm_model(model, name: str, mask_id: int, eos_ids: tuple[int, ...], pad_id: int, encode=None,
                    decode=None) -> DiffusionModel:
    return DiffusionModel(name, model.eval(), mask_id, tuple(eos_ids), pad_id, 0, "2d", False,
                          encode or _ids_in, decode or _ids_out)


def _ids_in(text: str) -> list[int]:
    return [int(t) for t in text.split()]


def _ids_out(ids) -> str:
    return " ".join(str(int(i)) for i in ids)


def _eos(config, default) -> tuple[int, ...]:
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return default
    return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)


LLADA_TO_LLAMA = (  # LLaDA (OLMo-style remote code) name -> transformers Llama name
    ("model.transformer.wte.", "model.embed_tokens."),
    ("model.transformer.ln_f.", "model.norm."),
    ("model.transformer.ff_out.", "lm_head."),
    (".attn_out.", ".self_attn.o_proj."),
    (".q_proj.", ".self_attn.q_proj."),
    (".k_proj.", ".self_attn.k_proj."),
    (".v_proj.", ".self_attn.v_proj."),
    (".ff_proj.", ".mlp.gate_proj."),
    (".up_proj.", ".mlp.up_proj."),
    (".ff_out.", ".mlp.down_proj."),
    (".attn_norm.", ".input_layernorm."),
    (".ff_norm.", ".post_attention_layernorm."),
    ("model.transformer.blocks.", "model.layers."),
)


def llada_to_llama_state_dict(state: dict) -> dict:
    """Rename a LLaDA checkpoint's tensors to transformers Llama names (SwiGLU: ff_proj is the gate)."""
    out = {}
    for key, value in state.items():
        new = key
        for old, repl in LLADA_TO_LLAMA:
            if old == "model.transformer.ff_out." and not key.startswith(old):
                continue
            new = new.replace(old, repl) if not (old == ".ff_out." and new.startswith("lm_head.")) else new
        out[new] = value
    return out


def load_diffusion_model(spec: str, threads: int | None = None) -> DiffusionModel:
    """The catalog name ``dllm-testbed``, a local transformers directory, or a hub id."""
    from decodekit.diffusion.testbed import TESTBED_NAME

    if threads:
        torch.set_num_threads(threads)
    if spec.lower() == TESTBED_NAME:
        return testbed_model()
    path = Path(spec).expanduser()
    if (path / "dllm" / "config.json").is_file() and (path / "ar" / "config.json").is_file():
        return testbed_model(path)  # a ``python -m decodekit.diffusion.train`` output directory
    if path.is_dir():
        config = _read_config(path)
    elif path.exists() or spec.startswith((".", "/")):
        raise UserError(f"{spec}: not a model directory (a directory with config.json)")
    else:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(spec, trust_remote_code=True).to_dict()
        except Exception as error:
            raise UserError(f"cannot load {spec!r} from the hub: {str(error).splitlines()[0]}") from None
    return _load_from_config(spec, config)


def _load_from_config(spec: str, config: dict) -> DiffusionModel:
    import transformers

    kind = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    tokenizer, encode, decode = _tokenizer_functions(spec)
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    try:
        if any(a.endswith("ForMaskedLM") for a in architectures) or kind in ("bert", "modernbert", "roberta",
                                                                             "distilbert"):
            model = transformers.AutoModelForMaskedLM.from_pretrained(spec, dtype=torch.float32)
            mask = getattr(tokenizer, "mask_token_id", None) if tokenizer is not None else None
            mask = mask if mask is not None else config.get("mask_token_id")
            if mask is None:
                raise UserError(f"{spec}: no mask token id (no tokenizer with a mask token, no mask_token_id)")
            sep = getattr(tokenizer, "sep_token_id", None) if tokenizer is not None else None
            eos = tuple(i for i in (sep, config.get("sep_token_id"), config.get("eos_token_id")) if i is not None)
            pad_id = pad if pad is not None else config.get("pad_token_id", 0) or 0
            return masked_lm_model(model, spec, int(mask), eos or (pad_id,), pad_id, encode, decode)
        if kind == "qwen2":
            model = transformers.Qwen2ForCausalLM.from_pretrained(spec, dtype=torch.float32)
            return dream_model(model, spec, pad_id=pad, encode=encode, decode=decode)
        if kind == "llama":
            model = transformers.LlamaForCausalLM.from_pretrained(spec, dtype=torch.float32)
            mask = config.get("mask_token_id", LLADA_MASK_ID)
            return llada_llama_model(model, spec, mask_id=mask, eos_ids=_eos_from(config, LLADA_EOS_IDS),
                                     pad_id=pad, encode=encode, decode=decode)
        if kind == "dream":
            model = transformers.AutoModel.from_pretrained(spec, trust_remote_code=True, dtype=torch.bfloat16)
            eos = _eos_from(config, DREAM_EOS_IDS)
            return DiffusionModel(spec, model.eval(), config.get("mask_token_id", DREAM_MASK_ID), eos,
                                  config.get("pad_token_id", eos[0]), 1, "4d", False, encode, decode)
        if kind == "llada":
            model = transformers.AutoModel.from_pretrained(spec, trust_remote_code=True, dtype=torch.bfloat16)
            return DiffusionModel(spec, model.eval(), config.get("mask_token_id", LLADA_MASK_ID), LLADA_EOS_IDS,
                                  LLADA_EOS_IDS[0], 0, "2d-nopos", False, encode, decode)
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"cannot load {spec!r}: {str(error).splitlines()[0]}") from None
    raise UserError(f"{spec}: model type {kind!r} is not a supported diffusion LM (qwen2/Dream, llama/LLaDA, "
                    "a *ForMaskedLM)")


def _eos_from(config: dict, default) -> tuple[int, ...]:
    eos = config.get("eos_token_id")
    if eos is None:
        return default
    return tuple(eos) if isinstance(eos, list) else (int(eos),)
