"""What a server is started with (`decodekit serve` options), checked before any model loads."""

from __future__ import annotations

from dataclasses import dataclass

from decodekit.defaults import NUM_DRAFT
from decodekit.errors import UserError
from decodekit.models import DEFAULT_MODEL

LEARNING = ("request", "shared")


@dataclass(frozen=True)
class ServeConfig:
    model: str = DEFAULT_MODEL
    draft_model: str | None = None  # for the `draft` method (requests cannot name models)
    method: str = "auto"  # the decoding method of requests that do not pick one
    dtype: str = "auto"
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8  # sequences stepped together
    max_queue: int = 32  # sequences waiting for a batch slot before requests are refused (429)
    api_key: str | None = None  # when set, every endpoint but /health needs `Authorization: Bearer <key>`
    max_tokens: int = 2048  # the most tokens one request may ask for
    max_body_bytes: int = 1_000_000
    request_timeout: float = 600.0  # seconds from submission until a request is failed (504)
    shutdown_grace: float = 30.0  # seconds in-flight requests get to finish on SIGTERM
    learning: str = "request"  # "request": drafters learn per request; "shared": across all requests
    num_draft: int = NUM_DRAFT
    log_prompts: bool = False  # off: logs carry sizes and timings, never prompt or output text

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch >= 1, f"--max-batch must be at least 1, got {self.max_batch}"),
            (self.max_queue >= 0, f"--max-queue must be at least 0, got {self.max_queue}"),
            (0 <= self.port <= 65535, f"--port must be between 0 and 65535, got {self.port}"),
            (self.max_tokens >= 1, f"--max-tokens must be at least 1, got {self.max_tokens}"),
            (self.max_body_bytes >= 1024, f"--max-body-bytes must be at least 1024, got {self.max_body_bytes}"),
            (self.request_timeout > 0, f"--request-timeout must be positive, got {self.request_timeout}"),
            (self.shutdown_grace >= 0, f"--shutdown-grace must be at least 0, got {self.shutdown_grace}"),
            (self.learning in LEARNING, f"--learning must be one of {', '.join(LEARNING)}, got {self.learning!r}"),
            (self.num_draft >= 1, f"--num-draft must be at least 1, got {self.num_draft}"),
            (self.api_key is None or len(self.api_key) >= 8, "--api-key must have at least 8 characters"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
