"""Whether the optional llama.cpp tools are built here (`make llamacpp-tools`), for tests that need them."""

from __future__ import annotations

from decodekit.bench.baselines.llama_server import llama_server_binary
from decodekit.errors import UserError


def llama_server_built() -> bool:
    try:
        llama_server_binary()
    except UserError:
        return False
    return True
