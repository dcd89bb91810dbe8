"""Files written whole or not at all: a temporary file in the same folder, then renamed over the target, so a
reader (or an interrupted run) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file beside it; `mode` sets its permission bits."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}-",
                                     delete=False) as handle:
        handle.write(text)
    try:
        if mode is not None:
            os.chmod(handle.name, mode)
        os.replace(handle.name, path)
    except OSError:
        Path(handle.name).unlink(missing_ok=True)
        raise
