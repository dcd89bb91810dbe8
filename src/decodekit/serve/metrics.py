"""The server's Prometheus metrics, in a registry of their own (one per server, none at module level).

Requests by endpoint and status; prompt and completion tokens; waiting and active sequences; per step, the
batch size, the draft nodes each sequence was allowed, the step time and the tokens each sequence committed
(accepted draft tokens + 1); per request, the time waiting for a slot, the time to the first token and the
end-to-end latency; cancellations (a client left), timeouts and rejections (a full queue).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from decodekit.trace import GenerationResult

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STEP_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
TOKEN_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 12, 16)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("decodekit_requests", "API requests answered", ["endpoint", "status"],
                                registry=registry)
        self.prompt_tokens = Counter("decodekit_prompt_tokens", "prompt tokens of the sequences served",
                                     registry=registry)
        self.completion_tokens = Counter("decodekit_completion_tokens", "tokens generated", registry=registry)
        self.queue_depth = Gauge("decodekit_queue_depth", "sequences waiting for a batch slot", registry=registry)
        self.active = Gauge("decodekit_active_sequences", "sequences in the running batch", registry=registry)
        self.batch_size = Histogram("decodekit_batch_size", "sequences in one batched step",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=registry)
        self.step_seconds = Histogram("decodekit_step_seconds", "time of one batched step (draft, forward, "
                                      "verify, commit)", buckets=STEP_BUCKETS, registry=registry)
        self.tokens_per_step = Histogram("decodekit_tokens_per_step", "tokens one sequence committed in one "
                                         "step (accepted draft tokens + 1)", buckets=TOKEN_BUCKETS,
                                         registry=registry)
        self.draft_limit = Gauge("decodekit_batch_draft_limit", "draft nodes each greedy sequence of the last "
                                 "batched step could propose (-1: the method's own sizing, a batch of one)",
                                 registry=registry)
        self.accepted_tokens = Counter("decodekit_accepted_draft_tokens", "draft tokens accepted",
                                       registry=registry)
        self.queue_seconds = Histogram("decodekit_queue_seconds", "time from submission to joining the batch",
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.first_token_seconds = Histogram("decodekit_time_to_first_token_seconds", "time from submission "
                                             "to the first token", buckets=LATENCY_BUCKETS, registry=registry)
        self.request_seconds = Histogram("decodekit_sequence_seconds", "time from submission to the last "
                                         "token of one sequence", buckets=LATENCY_BUCKETS, registry=registry)
        self.cancelled = Counter("decodekit_cancelled", "sequences dropped because their client left",
                                 registry=registry)
        self.timeouts = Counter("decodekit_timeouts", "sequences failed for running past their timeout",
                                registry=registry)
        self.rejected = Counter("decodekit_rejected", "requests refused", ["reason"], registry=registry)

    def observe_step(self, batch: int, seconds: float, committed: Sequence[int]) -> None:
        self.batch_size.observe(batch)
        self.step_seconds.observe(seconds)
        for count in committed:
            self.tokens_per_step.observe(count)

    def observe_done(self, done: GenerationResult, seconds: float) -> None:
        self.prompt_tokens.inc(done.prompt_tokens)
        self.completion_tokens.inc(len(done.token_ids))
        self.accepted_tokens.inc(done.accepted_tokens)
        self.request_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
