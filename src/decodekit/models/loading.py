"""`load_model`: a catalog name, a `.gguf` file, a local directory or a Hugging Face hub id -> `LoadedModel`.

A GGUF source is converted once to float32 safetensors (conversion_cache.py) for float32 / bfloat16; with
`--dtype q4` (alias `gguf`) it is read straight from its blocks instead (gguf_q4_model.py), on the CPU,
with the lean backend.

With `backend="llamacpp"` the forward is llama.cpp's over the GGUF file itself (backend_llamacpp.py); transformers
then gives only the tokenizer and the config, read from the GGUF file once into the conversion cache (without
its weights), and the `LoadedModel.model` is built on the meta device: it holds no weights.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from decodekit.errors import UserError
from decodekit.models.backend_hf import TransformersBackend
from decodekit.models.backend_lean import LeanLlamaBackend, unsupported_reason
from decodekit.models.backend_llamacpp import LlamaCppBackend
from decodekit.models.catalog import CATALOG, DEFAULT_MODEL, gguf_path, lookup
from decodekit.models.conversion_cache import cache_root, cached_entry, entry_key
from decodekit.models.cpu_features import cpu_has_amx_bf16
from decodekit.models.gguf_q4_model import load_q4
from decodekit.models.loaded import LoadedModel
from decodekit.models.precision_probe import BF16, INT4, rows_invariant

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
Q4 = "q4"  # bfloat16 activations over the GGUF file's own quantised layer weights (gguf_int4.py)
Q4_ALIASES = frozenset({Q4, "gguf"})  # `gguf` says what it is: the file's own blocks, Q4_K / Q5_0 / Q8_0 too


def bfloat16_is_exact_and_fast(device: torch.device) -> bool:
    """`--dtype auto`'s rule on a CPU: bfloat16 when the CPU has AMX (its products beat float32's) and its
    bfloat16 products give each row the same bits for any number of rows, measured now (precision_probe.py),
    so that verification is exact; on a GPU, bfloat16."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_amx_bf16() and rows_invariant(BF16)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise UserError(f"unknown device {device!r}: use auto, cpu or cuda") from error


Q4_ARCHITECTURES = frozenset({"llama", "qwen2"})  # GGUF architectures the q4 path reads (gguf_q4_model.py)


def gguf_architecture(gguf_file: Path) -> str:
    """The file's `general.architecture` (read from its header)."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_file)).fields.get("general.architecture")
    return str(field.contents()) if field is not None else "llama"


def q4_is_exact(device: torch.device) -> bool:
    """Whether `--dtype q4` verifies exactly here: on a CPU whose int4 and bfloat16 products (the layers and
    the output head) give each row the same bits for any number of rows, measured now (precision_probe.py)."""
    return device.type == "cpu" and rows_invariant(INT4) and rows_invariant(BF16)


def auto_dtype(gguf_file: Path | None, backend: str, device: torch.device) -> str:
    """`--dtype auto`: the fastest precision whose verification is exact on this machine, by a measured rule.

    q4 for a Llama or Qwen2 GGUF file on the lean backend when `q4_is_exact` (it reads a quarter to an eighth of
    float32's bytes: its one-token step was the fastest of the three on every CPU measured, the README has
    the figures); else bfloat16 where `bfloat16_is_exact_and_fast`; else float32. A GGUF file of another
    architecture (Gemma) runs on the transformers backend, whose forward has no row-by-row attention: float32
    on a CPU.
    """
    if gguf_file is not None and device.type == "cpu":
        lean = backend != "transformers" and gguf_architecture(gguf_file) in Q4_ARCHITECTURES
        if lean and q4_is_exact(device):
            return Q4
        if not lean:
            return "float32"
    return "bfloat16" if bfloat16_is_exact_and_fast(device) else "float32"


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype a model computes in: `auto` (for a source that is not a q4 GGUF file, see `auto_dtype`)
    is bfloat16 where `bfloat16_is_exact_and_fast`, float32 elsewhere; `q4` (`gguf`) computes in bfloat16."""
    if dtype in Q4_ALIASES:
        return torch.bfloat16
    if dtype == "auto":
        return torch.bfloat16 if bfloat16_is_exact_and_fast(device) else torch.float32
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or q4 (alias gguf)")
    return DTYPES[dtype]


def _notice(message: str) -> None:
    print(f"decodekit: {message}", file=sys.stderr)


def _convert_gguf(gguf_file: Path) -> Callable[[Path], None]:
    """A builder that dequantises `gguf_file` with transformers and writes safetensors, config and tokenizer."""

    def build(directory: Path) -> None:
        from safetensors.torch import save_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _notice(f"converting {gguf_file.name} once (dequantising GGUF); later loads use the cache")
        folder, name = str(gguf_file.parent), gguf_file.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        save_model(model, str(directory / "model.safetensors"))
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(directory)
        model.generation_config.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return build


def _describe_gguf(gguf_file: Path) -> Callable[[Path], None]:
    """A builder that writes `gguf_file`'s config, generation config and tokenizer, not its weights."""

    def build(directory: Path) -> None:
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        _notice(f"reading the tokenizer and config of {gguf_file.name} once; later loads use the cache")
        folder, name = str(gguf_file.parent), gguf_file.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(directory)
        GenerationConfig.from_model_config(config).save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return build


def _gguf_file(name_or_path: str) -> Path | None:
    """The GGUF file a catalog name or a .gguf path stands for; None for directories and hub ids."""
    entry = lookup(name_or_path)
    if entry is not None:
        return gguf_path(entry, cache_root())
    if name_or_path.endswith(".gguf"):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UserError(f"GGUF file not found: {name_or_path}")
        return path
    return None


def _source_directory(name_or_path: str, gguf_file: Path | None) -> tuple[str, str]:
    """(directory or hub id to load with from_pretrained, display name)."""
    if gguf_file is not None:
        entry = lookup(name_or_path)
        return (str(cached_entry(entry_key(gguf_file), _convert_gguf(gguf_file), _notice)),
                entry.name if entry is not None else gguf_file.name)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{name_or_path} is a directory without config.json: not a transformers model")
        return str(path), path.name
    if "/" in name_or_path and not name_or_path.startswith((".", "/", "~")):
        return name_or_path, name_or_path  # a Hugging Face hub id
    raise UserError(
        f"unknown model {name_or_path!r}: use one of {', '.join(CATALOG)}, a .gguf file, "
        "a local model directory or a Hugging Face hub id"
    )


BACKENDS = ("auto", "lean", "transformers", "llamacpp")
LLAMACPP = "llamacpp"


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")


def make_backend(model, backend: str = "auto"):
    """The forward backend for a loaded transformers model.

    `auto`: the lean backend for Llama-architecture models, transformers otherwise; `lean` raises a
    UserError for a model it cannot run; `transformers` always works. (`llamacpp` runs a GGUF file, not a
    transformers model: `load_model(..., backend="llamacpp")`.)
    """
    _check_backend(backend)
    if backend == LLAMACPP:
        raise UserError("the llama.cpp backend runs a GGUF file: load_model(name, backend='llamacpp')")
    if backend == "transformers" or (backend == "auto" and unsupported_reason(model) is not None):
        return TransformersBackend(model)
    return LeanLlamaBackend(model)


def check_q4(gguf_file: Path | None, backend: str, device: torch.device) -> None:
    """What `--dtype q4` needs before a model is loaded: a GGUF source, the CPU, the lean backend."""
    if gguf_file is None:
        raise UserError("--dtype q4 keeps a GGUF file's 4-bit weights: give a catalog model or a .gguf file")
    if device.type != "cpu":
        raise UserError("--dtype q4 runs on the CPU only (PyTorch's int4 CPU kernel)")
    if backend == "transformers":
        raise UserError("--dtype q4 needs the lean backend, not transformers")


def q4_backend(model, layers, prefill) -> LeanLlamaBackend:
    """The lean backend over a GGUF file's quantised layer weights (and their prefill copy, if any), or a
    UserError saying why there is none."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise UserError(f"--dtype q4 needs the lean backend, which cannot run this model: {reason}")
    return LeanLlamaBackend(model, int4_layers=layers, prefill_layers=prefill)


def load_model(
    name_or_path: str = DEFAULT_MODEL, dtype: str = "auto", device: str = "auto", threads: int | None = None,
    backend: str = "auto",
) -> LoadedModel:
    """Load a causal LM for decoding; see the module docstring for what `name_or_path` may be, and
    `make_backend` for `backend`."""
    _check_backend(backend)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    start = time.perf_counter()
    if backend == LLAMACPP:
        return _load_llamacpp(name_or_path, dtype, device, start)
    torch_device = resolve_device(device)
    gguf_file = _gguf_file(name_or_path)
    if dtype == "auto":
        dtype = auto_dtype(gguf_file, backend, torch_device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if dtype in Q4_ALIASES:
        check_q4(gguf_file, backend, torch_device)
        model, tokenizer, layers, prefill = load_q4(gguf_file, _notice, torch_dtype)
        entry = lookup(name_or_path)
        return LoadedModel(
            name=entry.name if entry is not None else gguf_file.name, model=model, tokenizer=tokenizer,
            backend=q4_backend(model, layers, prefill), dtype=torch_dtype, device=torch_device,
            load_seconds=time.perf_counter() - start, precision=Q4,
        )
    source, display = _source_directory(name_or_path, gguf_file)
    offline = os.environ.get("HF_HUB_OFFLINE")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as error:
        hint = " (this machine may be offline)" if offline or source == name_or_path else ""
        raise UserError(f"cannot load model {name_or_path!r}{hint}: {str(error).splitlines()[0]}") from error
    model.to(torch_device).eval()
    return LoadedModel(
        name=display,
        model=model,
        tokenizer=tokenizer,
        backend=make_backend(model, backend),
        dtype=torch_dtype,
        device=torch_device,
        load_seconds=time.perf_counter() - start,
    )


def _load_llamacpp(name_or_path: str, dtype: str, device: str, start: float) -> LoadedModel:
    """A GGUF file on the llama.cpp backend, with transformers' tokenizer and config and no transformers weights."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
    )

    if dtype != "auto":
        raise UserError(f"--backend llamacpp computes with the GGUF file's own weights: leave --dtype at auto, "
                        f"not {dtype!r}")
    if device not in ("auto", "cpu"):
        raise UserError(f"--backend llamacpp runs on the CPU, not {device!r}")
    gguf_file = _gguf_file(name_or_path)
    if gguf_file is None:
        raise UserError("--backend llamacpp runs GGUF files: give a catalog model or a .gguf file")
    backend = LlamaCppBackend(gguf_file)
    source = str(cached_entry(entry_key(gguf_file) + "-tokenizer", _describe_gguf(gguf_file), _notice))
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig.from_pretrained(source)
    entry = lookup(name_or_path)
    return LoadedModel(
        name=entry.name if entry is not None else gguf_file.name,
        model=model.eval(),
        tokenizer=tokenizer,
        backend=backend,
        dtype=torch.float32,
        device=torch.device("cpu"),
        load_seconds=time.perf_counter() - start,
        precision="gguf",
    )
