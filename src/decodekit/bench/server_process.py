"""A server as a child process on a loopback port, as `decodekit bench-serve` runs decodekit's own server and
llama.cpp's, and the bench its `llamacpp-spec` baseline: a free port, its output to a log file (a pipe nobody
reads would fill and stall it), ready once `/health` answers 200, stopped with SIGTERM (then killed after a
grace period)."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import time
from pathlib import Path

from decodekit.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int, log: Path, what: str, env: dict | None = None,
          timeout: float = 600) -> subprocess.Popen:
    """Run `command` (a server that will listen on 127.0.0.1:`port`) and return once it is healthy; a
    UserError with the end of its log when it exits or does not answer within `timeout` seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
            raise UserError(f"{what} exited with code {process.returncode}: {lines[-1][:300]} (its log: {log})")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.5)
    stop(process, grace=0)
    raise UserError(f"{what} did not start within {timeout:.0f} s (its log: {log})")


def stop(process: subprocess.Popen, grace: float = 120) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
