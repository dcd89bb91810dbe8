"""llama.cpp's own server (`llama-server`): the baseline of `decodekit bench-serve --baseline llama-server`, and
the process behind the bench's `llamacpp-spec` (llamacpp_spec.py).

`make llamacpp-tools` builds it from the llama.cpp sources vendored in the llama-cpp-python sdist, with the
same portable CPU flags as `make llamacpp`, into `.venv/llama.cpp/bin/` (found through `sys.prefix`);
`DECODEKIT_LLAMA_SERVER` names another binary. It serves the model's GGUF file (a catalog entry's or a
`.gguf` path) with one slot per concurrent client (`--parallel`), continuous batching (its default), the
context split between the slots, the threads bench-serve gives decodekit's server, and its prompt cache
off (`--no-cache-prompt --cache-ram 0`: bench-serve sends the same prompts again at every level, and
decodekit's server keeps no prompt cache), on the same loopback OpenAI-compatible API, so that bench-serve
drives both with the same clients and the same prompts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from decodekit.errors import UserError
from decodekit.bench import server_process as process

BINARY_VARIABLE = "DECODEKIT_LLAMA_SERVER"


def llama_server_binary() -> Path:
    """The llama-server binary: $DECODEKIT_LLAMA_SERVER, else the one `make llamacpp-tools` built."""
    named = os.environ.get(BINARY_VARIABLE)
    binary = Path(named).expanduser() if named else Path(sys.prefix) / "llama.cpp" / "bin" / "llama-server"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise UserError(f"llama-server not found at {binary}: `make llamacpp-tools` builds it (or set "
                        f"{BINARY_VARIABLE} to a llama-server binary)")
    return binary


def llama_server_command(binary: Path, gguf: Path, port: int, slots: int, context: int, threads: int) -> list[str]:
    """llama-server serving `gguf` on 127.0.0.1:`port` with `slots` slots sharing `context` positions, `threads`
    threads for decoding and for prompts, and no prompt cache; callers append their own flags."""
    return [str(binary), "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            "--parallel", str(slots), "--ctx-size", str(context), "--threads", str(threads),
            "--threads-batch", str(threads), "--no-cache-prompt", "--cache-ram", "0"]


def start_llama_server(binary: Path, gguf: Path, port: int, slots: int, context_per_slot: int, threads: int,
                       log: Path) -> subprocess.Popen:
    """llama-server on 127.0.0.1:`port`, with its chat templates (`--jinja`), returned once it is healthy."""
    command = llama_server_command(binary, gguf, port, slots, slots * context_per_slot, threads) + ["--jinja"]
    return process.start(command, port, log, "llama-server")
