"""Run the app under uvicorn: load the model, warm up, serve until SIGINT / SIGTERM.

On SIGTERM uvicorn stops accepting connections and waits up to `shutdown_grace` seconds for in-flight
requests (streams included) to finish; then the app's lifespan stops the scheduler, which fails whatever is
still queued or running with a 503 and ends its thread.
"""

from __future__ import annotations

import ipaddress
import logging
import sys

from decodekit.serve.config import ServeConfig


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(config: ServeConfig) -> None:
    import uvicorn

    from decodekit.serve.app import build_app
    from decodekit.serve.engine import Engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if not is_loopback(config.host) and not config.api_key:
        print(f"decodekit serve: warning: listening on {config.host} without an API key: anyone who can reach "
              "this port can use the model (set --api-key or DECODEKIT_API_KEY)", file=sys.stderr)
    engine = Engine(config)
    engine.warm_up()
    print(f"decodekit serve: {engine.name} ({engine.model.precision}, {engine.model.backend.name} backend), "
          f"method {config.method}, up to {config.max_batch} sequences per step, on "
          f"http://{config.host}:{config.port}/v1", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(
        build_app(engine), host=config.host, port=config.port, log_level="info", lifespan="on",
        timeout_graceful_shutdown=int(config.shutdown_grace) or None, access_log=True,
    )).run()
