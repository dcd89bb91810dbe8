"""A cache of GGUF models converted to safetensors, so that only the first load pays for dequantisation.

Layout: `<cache root>/converted/<key>/` with `model.safetensors`, the config, the tokenizer and
`manifest.json` (size and sha256 of every other file). An entry is written into a temporary directory and
renamed into place, so a crash never leaves a half-written entry under its final name; an entry whose files
do not match its manifest is reported, deleted and rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MANIFEST = "manifest.json"


def cache_root() -> Path:
    """`DECODEKIT_CACHE`, else `$XDG_CACHE_HOME/decodekit`, else `~/.cache/decodekit`."""
    if explicit := os.environ.get("DECODEKIT_CACHE"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "decodekit"


def entry_key(gguf_file: Path) -> str:
    """Names an entry by the source file's name, size and modification time."""
    stat = gguf_file.stat()
    ident = f"{gguf_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return f"{gguf_file.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def _problem(entry: Path) -> str | None:
    """Why an existing entry cannot be trusted, or None when every file matches the manifest."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return "its manifest is missing or unreadable"
    for name, expected in manifest["files"].items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{name} has the wrong size"
        if _sha256(path) != expected["sha256"]:
            return f"{name} fails its checksum"
    return None


def cached_entry(
    key: str, build: Callable[[Path], None], notice: Callable[[str], None], root: Path | None = None
) -> Path:
    """Return the directory of a valid entry for `key`, building it with `build(directory)` when needed."""
    root = root or cache_root()
    entry = root / "converted" / key
    if entry.exists():
        problem = _problem(entry)
        if problem is None:
            return entry
        notice(f"cache entry {entry} is corrupt ({problem}); rebuilding it")
        shutil.rmtree(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=entry.parent))
    try:
        build(staging)
        files = {
            path.name: {"size": path.stat().st_size, "sha256": _sha256(path)}
            for path in sorted(staging.iterdir())
            if path.is_file()
        }
        (staging / MANIFEST).write_text(json.dumps({"files": files}, indent=1))
        try:
            staging.rename(entry)
        except OSError:  # another process finished the same entry first
            if _problem(entry) is not None:
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return entry
