"""A cache of GGUF models converted to safetensors, so that only the first load pays for dequantisation.

Layout: `<cache root>/converted/<key>/` with `model.safetensors`, the config, the tokenizer and
`manifest.json` (size and sha256 of every other file). An entry is written into a temporary directory and
renamed into place, so a crash never leaves a half-written entry under its final name; an entry whose files
do not match its manifest is reported, deleted and rebuilt, never loaded.

Hashing the weights on every load costs about 0.4 s, so a full verification leaves `verified.json`: the
device, inode, size, modification and change times of each file (the manifest's too). While those are
unchanged, the files have not been written since they were verified (a write or a rename moves the change
time, which no user can set; a copy is a new inode), and the hashes are not recomputed. Files changed less
than RACY_SECONDS before the verification are not stamped, because a second change within the same
timestamp tick could leave the times as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MANIFEST = "manifest.json"
STAMP = "verified.json"
RACY_SECONDS = 2.0


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


def _identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _stamped(entry: Path, names: list[str]) -> bool:
    """True when every file is as it was at its last full verification."""
    try:
        stamp = json.loads((entry / STAMP).read_text())
        return all(stamp.get(name) == _identity(entry / name) for name in names)
    except (OSError, ValueError, AttributeError):
        return False


def _stamp(entry: Path, names: list[str]) -> None:
    """Record the files' identities after a full verification (best effort: a read-only cache just hashes)."""
    try:
        identities = {name: _identity(entry / name) for name in names}
        oldest_allowed = time.time_ns() - int(RACY_SECONDS * 1e9)
        if any(max(identity[3:]) > oldest_allowed for identity in identities.values()):
            return
        with tempfile.NamedTemporaryFile("w", dir=entry, prefix=f".{STAMP}-", delete=False) as handle:
            json.dump(identities, handle)
        os.replace(handle.name, entry / STAMP)
    except OSError:
        pass


def _problem(entry: Path) -> str | None:
    """Why an existing entry cannot be trusted, or None when every file matches the manifest."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return "its manifest is missing or unreadable"
    names = [MANIFEST, *sorted(manifest["files"])]
    if _stamped(entry, names):
        return None
    for name, expected in manifest["files"].items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{name} has the wrong size"
        if _sha256(path) != expected["sha256"]:
            return f"{name} fails its checksum"
    _stamp(entry, names)
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
