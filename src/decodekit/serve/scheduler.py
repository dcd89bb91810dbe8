"""Continuous batching: one worker thread owns the model and steps every active sequence together.

Each API request becomes one `Work` per choice (a prompt and its `DecodeRequest`). `submit` puts works in a
bounded waiting queue (`QueueFull` when it is full, `ShuttingDown` once `stop` began). The worker loops over
step boundaries:

    drop      works that were cancelled (their client went away) or ran past their deadline: release the slot
    admit     waiting works while fewer than `max_batch` are active: build the decoder, take a cache slot from
              the one store (`CachePool.acquire`), prefill the prompt into it
    step      one `step_together` over every active sequence: each proposes its draft tree, one batched
              forward verifies them all, each commits its own tokens
    emit      each sequence's new tokens go to its work's `sink`; a finished one leaves the batch and gives
              its slot back

So a request joins and leaves the running batch at step boundaries, and a cancelled one frees its slot within
one step.

Drafting under load: every row one sequence drafts is paid by the whole batch's forward, so with more than
one sequence active (and `batch_cost`, the model's forward-cost curve, given) each may draft at most
`batch_draft_limit` nodes that step: the draft size that maximises the batch's expected tokens per second on
the measured curve, at the acceptance rate its sequences have shown so far (drafting/cost_curve.py:
`batch_draft_size`). On a CPU whose product kernel costs in proportion to its rows that is no drafting once a
few sequences share the batch; where extra rows are nearly free, drafting goes on. Only greedy sequences are
limited: a smaller draft changes how many tokens a greedy step commits, never which ones, but speculative
sampling draws its random numbers per drafted node, so a sampled sequence keeps its method's own drafts and
its seed gives the text of its solo run.

The worker never waits on a reader: `sink` must not block (the server's puts an event on an asyncio queue;
what a slow reader has not read yet stays buffered there, at most one event per step and so at most
`max_tokens` of them). A sequence's tokens are those of its solo run whatever shares the batch: the batched
forward gives each sequence its solo logits (models/protocols.py), and each keeps its own sampler, generator,
drafter and cache.

Events sent to a sink: `Emitted` (a step's tokens, text and, when asked for, log-probabilities), then either
`Done` (the GenerationResult) or `Failed` (an HTTP-like status and a message).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from decodekit.core import DecodeRequest
from decodekit.drafting.cost_curve import CostCurve
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.serve.metrics import Metrics
from decodekit.serve.release import TextRelease
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.step import DecodeState, prefill, result, step_together
from decodekit.trace import GenerationResult

log = logging.getLogger("decodekit.serve")

DecoderFactory = Callable[[str, dict], tuple[Decoder, Callable[[], None]]]  # (decoder, release its learned state)
PRIOR_ACCEPTED, PRIOR_DRAFTED = 1, 2  # the acceptance rate assumed before any draft was verified: one half


class QueueFull(Exception):
    """The waiting queue holds `max_queue` works: the client should retry later."""


class ShuttingDown(Exception):
    """The scheduler is stopping and takes no new work."""


@dataclass
class Emitted:
    index: int
    text: str  # text released by this step (held back while it may be the start of a stop string)
    tokens: list[int]
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)


@dataclass
class Done:
    index: int
    result: GenerationResult
    queue_seconds: float
    first_token_seconds: float | None  # from submission to the first emitted token


@dataclass
class Failed:
    index: int
    status: int  # 400 a bad request, 500 a server error, 503 shutting down, 504 the deadline passed
    message: str


Event = Emitted | Done | Failed
Sink = Callable[[Event], None]


@dataclass
class Work:
    """One sequence to generate: a request's prompt, one choice of it."""

    request: DecodeRequest
    method: str
    options: dict
    index: int  # the choice's index in its API response
    sink: Sink
    deadline: float  # on the scheduler's clock
    submitted: float = 0.0
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Drop this work at the next step boundary (from any thread); it sends no more events."""
        self.cancelled.set()


@dataclass
class Running:
    work: Work
    state: DecodeState
    release_learned: Callable[[], None]
    release: TextRelease
    started: float
    first_token: float | None = None


class CachePool:
    """Cache slots of one store for the active sequences, so that one batched forward serves them all.

    The lean backend's caches are slots of one `KVSlots` store (acquired and released); the transformers
    backend's are independent caches, made per sequence and batched by padding."""

    def __init__(self, model: LoadedModel, size: int) -> None:
        self.backend = model.backend
        caches = self.backend.new_caches(size)
        self.store = getattr(caches[0], "store", None)
        if self.store is not None:
            for cache in caches:
                cache.release()

    def acquire(self):
        return self.store.acquire() if self.store is not None else self.backend.new_cache()

    def release(self, cache) -> None:
        if self.store is not None:
            cache.release()


class Scheduler:
    def __init__(self, model: LoadedModel, decoders: DecoderFactory, *, max_batch: int = 8, max_queue: int = 32,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic,
                 batch_cost: Callable[[], CostCurve] | None = None) -> None:
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch}, {max_queue}")
        self.model = model
        self.decoders = decoders
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.batch_cost = batch_cost  # the model's forward-cost curve, for drafting under load (None: no limit)
        self.pool = CachePool(model, max_batch)
        self._waiting: deque[Work] = deque()
        self._active: list[Running] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._stop_by: float | None = None
        self._thread: threading.Thread | None = None
        self.steps = 0

    # --- the API side (any thread) ---

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        return len(self._active)

    def submit(self, works: list[Work]) -> None:
        """Queue the works of one request, all or none."""
        with self._wake:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            room = self.max_queue + max(0, self.max_batch - len(self._active)) - len(self._waiting)
            if len(works) > room:
                raise QueueFull(f"{len(self._waiting)} sequences are waiting; the queue takes {self.max_queue}")
            now = self.clock()
            for work in works:
                work.submitted = now
                self._waiting.append(work)
            self.metrics.queue_depth.set(len(self._waiting))
            self._wake.notify()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decodekit-scheduler", daemon=True)
            self._thread.start()

    def stop(self, grace: float = 0.0) -> None:
        """Take no new work; let what is queued and running finish for up to `grace` seconds, then fail the
        rest (503) and end the worker."""
        with self._wake:
            self._stopping = True
            self._stop_by = self.clock() + grace
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:  # never started: fail what waits
            self._fail_all(503, "the server is shutting down")

    # --- the worker ---

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._active and not self._stopping:
                    self._wake.wait()
                if self._stopping and self._stop_by is not None and self.clock() >= self._stop_by:
                    break
                if self._stopping and not self._waiting and not self._active:
                    break
            try:
                self.run_once()
            except Exception:  # a bug in a step: fail the batch, keep serving
                log.error("decodekit serve: a step failed\n%s", traceback.format_exc())
                for running in list(self._active):
                    self._leave(running, Failed(running.work.index, 500, "internal error while decoding"))
        self._fail_all(503, "the server is shutting down")

    def run_once(self) -> None:
        """One step boundary: drop, admit, step, emit. The worker's loop body (tests call it directly)."""
        now = self.clock()
        for running in list(self._active):
            work = running.work
            if work.cancelled.is_set():
                self.metrics.cancelled.inc()
                self._leave(running, None)
            elif now >= work.deadline:
                self.metrics.timeouts.inc()
                self._leave(running, Failed(work.index, 504, "the request ran past its timeout"))
        self._sweep_waiting(now)
        self._admit()
        if not self._active:
            return
        batch = list(self._active)
        states = [running.state for running in batch]
        limit = batch_draft_limit(self.batch_cost(), states) if self.batch_cost is not None and len(batch) > 1 \
            else None
        self.metrics.draft_limit.set(-1 if limit is None else limit)
        tick = time.perf_counter()
        committed = step_together(states, [limit if state.request.sampling.greedy else None for state in states])
        seconds = time.perf_counter() - tick
        self.steps += 1
        self.metrics.observe_step(len(batch), seconds, [len(c.tokens) for c in committed])
        for running, step in zip(batch, committed):
            self._emit(running, step.tokens)

    def _sweep_waiting(self, now: float) -> None:
        """Drop waiting works whose client left, and fail those past their deadline, while they wait."""
        with self._wake:
            if not any(w.cancelled.is_set() or now >= w.deadline for w in self._waiting):
                return
            keep, expired = deque(), []
            for work in self._waiting:
                if work.cancelled.is_set():
                    self.metrics.cancelled.inc()
                elif now >= work.deadline:
                    expired.append(work)
                else:
                    keep.append(work)
            self._waiting = keep
        for work in expired:
            self.metrics.timeouts.inc()
            work.sink(Failed(work.index, 504, "the request waited past its timeout"))

    def _admit(self) -> None:
        while True:
            with self._wake:
                if not self._waiting or len(self._active) >= self.max_batch:
                    self.metrics.queue_depth.set(len(self._waiting))
                    return
                work = self._waiting.popleft()
            if work.cancelled.is_set():
                self.metrics.cancelled.inc()
                continue
            if self.clock() >= work.deadline:
                self.metrics.timeouts.inc()
                work.sink(Failed(work.index, 504, "the request waited past its timeout"))
                continue
            self._join(work)

    def _join(self, work: Work) -> None:
        started = self.clock()
        self.metrics.queue_seconds.observe(started - work.submitted)
        cache = None
        release_learned: Callable[[], None] = _nothing
        try:
            decoder, release_learned = self.decoders(work.method, work.options)
            cache = self.pool.acquire()
            state = prefill(self.model, work.request, decoder, work.method, cache)
        except UserError as error:
            self._abandon(cache, release_learned)
            work.sink(Failed(work.index, 400, str(error)))
            return
        except Exception:
            log.error("decodekit serve: a prefill failed\n%s", traceback.format_exc())
            self._abandon(cache, release_learned)
            work.sink(Failed(work.index, 500, "internal error while reading the prompt"))
            return
        running = Running(work, state, release_learned, TextRelease(work.request.stop), started)
        with self._wake:
            self._active.append(running)
        self.metrics.active.set(len(self._active))

    def _abandon(self, cache, release_learned: Callable[[], None]) -> None:
        if cache is not None:
            self.pool.release(cache)
        release_learned()

    def _emit(self, running: Running, tokens: list[int]) -> None:
        state, work = running.state, running.work
        if work.cancelled.is_set():  # the client left during the step: nothing more to send
            self.metrics.cancelled.inc()
            self._leave(running, None)
            return
        record = state.steps[-1]
        text = running.release.take(state.output.text, state.finished)
        if tokens:
            if running.first_token is None:
                running.first_token = self.clock()
                self.metrics.first_token_seconds.observe(running.first_token - work.submitted)
            work.sink(Emitted(work.index, text, list(tokens), list(record.logprobs), list(record.top_logprobs)))
        if state.finished:
            done = result(state)
            first = None if running.first_token is None else running.first_token - work.submitted
            self.metrics.observe_done(done, self.clock() - work.submitted)
            self._leave(running, Done(work.index, done, running.started - work.submitted, first))

    def _leave(self, running: Running, event: Event | None) -> None:
        with self._wake:
            if running in self._active:
                self._active.remove(running)
        self.pool.release(running.state.cache)
        running.release_learned()
        self.metrics.active.set(len(self._active))
        if event is not None:
            running.work.sink(event)

    def _fail_all(self, status: int, message: str) -> None:
        for running in list(self._active):
            self._leave(running, Failed(running.work.index, status, message))
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
        for work in waiting:
            if not work.cancelled.is_set():
                work.sink(Failed(work.index, status, message))
        self.metrics.queue_depth.set(0)


def _nothing() -> None:
    return None


def batch_draft_limit(curve: CostCurve, states: list[DecodeState]) -> int:
    """The draft nodes each greedy one of `states` may propose in one batched step: `CostCurve.batch_draft_size` at the
    acceptance rate (accepted / drafted nodes) of every step these sequences have taken, with a prior of one
    half, up to the largest draft budget among them."""
    accepted = PRIOR_ACCEPTED + sum(len(record.accepted) for state in states for record in state.steps)
    drafted = PRIOR_DRAFTED + sum(len(record.drafted) for state in states for record in state.steps)
    most = max(state.request.num_draft for state in states)
    return curve.batch_draft_size(len(states), accepted / drafted, most)
