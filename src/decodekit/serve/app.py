"""The ASGI app: OpenAI-compatible routes over an `Engine`, built by `build_app` (no module-level app).

    POST /v1/chat/completions   messages through the model's chat template; stream or not
    POST /v1/completions        a raw prompt (text, several texts, or token ids); stream or not
    GET  /v1/models             the served model
    GET  /health                {"status": "ok"} (never needs the key; 503 while shutting down)
    GET  /metrics               Prometheus text (metrics.py)

With an API key, every route but /health needs `Authorization: Bearer <key>` (401 otherwise; compared with
`hmac.compare_digest`). Bodies over `max_body_bytes` are refused (413) before they are parsed; a full queue
answers 429 with Retry-After; every refusal is an OpenAI-style error object (errors.py), and an unexpected
exception a 500 that names nothing of the input. A client that disconnects cancels its request: a stream's
generator is closed by Starlette when the client goes away, and a non-streamed request watches for the
disconnect while it waits. Logs carry ids, sizes and timings; prompt and output text only with log_prompts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from decodekit.serve.engine import Engine
from decodekit.serve.errors import APIError, error_body
from decodekit.serve.job import Job
from decodekit.serve.metrics import CONTENT_TYPE
from decodekit.serve.openai_schema import (
    Params,
    chat_choice,
    chat_chunk,
    chat_completion,
    chat_delta,
    chat_logprobs,
    completion_logprobs,
    model_card,
    parse_chat,
    parse_completion,
    text_choice,
    text_completion,
    usage,
)
from decodekit.serve.scheduler import Done, Emitted, Failed, QueueFull, ShuttingDown

log = logging.getLogger("decodekit.serve")

RETRY_AFTER_SECONDS = 1
LOGPROB_FLOOR = -9999.0  # what OpenAI reports for a token the processed distribution rules out (-inf)


class BearerAuth:
    """ASGI middleware: every path but /health needs the bearer key."""

    def __init__(self, app, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if not (scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)):
            message = "a valid API key is required: Authorization: Bearer <key>"
            response = JSONResponse(error_body(401, message, None, "invalid_api_key"), 401,
                                    headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), error.status, headers=error.headers)


def sse(data: dict | str) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, allow_nan=False)
    return f"data: {text}\n\n"


class Routes:
    """The handlers over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self.stopping = False

    # --- plumbing ---

    def endpoint(self, name: str, handler: Callable[[Request], Awaitable[Response]]
                 ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except APIError as error:
                response = error_response(error)
            except Exception:
                log.exception("decodekit serve: %s failed", name)
                response = error_response(APIError(500, "internal server error"))
            self.engine.metrics.requests.labels(name, str(response.status_code)).inc()
            return response

        return run

    async def read_json(self, request: Request):
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"the request body is over {limit} bytes", None, "body_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise APIError(413, f"the request body is over {limit} bytes", None, "body_too_large")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise APIError(400, "the request body is not valid JSON", None, "invalid_json") from None

    def check_model(self, params: Params) -> None:
        if params.model != self.engine.name:
            raise APIError(404, f"The model {params.model!r} does not exist; this server serves "
                           f"{self.engine.name!r}", "model", "model_not_found")

    def submit(self, prompts: list[list[int]], params: Params, prompt_param: str) -> Job:
        job = Job(asyncio.get_running_loop(), len(prompts) * params.n)
        job.works = self.engine.works(prompts, params, job.sink, prompt_param)
        try:
            self.engine.scheduler.submit(job.works)
        except QueueFull as error:
            self.engine.metrics.rejected.labels("queue_full").inc()
            raise APIError(429, f"the server is busy ({error}); retry shortly", None, "queue_full",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except ShuttingDown:
            self.engine.metrics.rejected.labels("shutting_down").inc()
            raise APIError(503, "the server is shutting down", None, "shutting_down") from None
        return job

    def entries(self, event: Emitted) -> list[tuple[str, float, list[tuple[str, float]]]]:
        text = self.engine.token_text
        return [(text(token), max(lp, LOGPROB_FLOOR), [(text(t), max(v, LOGPROB_FLOOR)) for t, v in top])
                for token, lp, top in zip(event.tokens, event.logprobs, event.top_logprobs)]

    @staticmethod
    def stats(method: str, done: dict[int, Done]) -> dict:
        return {"method": method, "choices": [
            {"index": i, "finish": d.result.finish_reason, **d.result.stats,
             "queue_seconds": round(d.queue_seconds, 4),
             "time_to_first_token": None if d.first_token_seconds is None else round(d.first_token_seconds, 4)}
            for i, d in sorted(done.items())]}

    async def collect(self, job: Job, request: Request) -> tuple[dict[int, list[Emitted]], dict[int, Done]] | None:
        """Every event of a non-streamed job, or None when the client went away first (the job is cancelled)."""
        emitted: dict[int, list[Emitted]] = {}
        done: dict[int, Done] = {}

        async def gather() -> Failed | None:
            async for event in job.events():
                if isinstance(event, Emitted):
                    emitted.setdefault(event.index, []).append(event)
                elif isinstance(event, Done):
                    done[event.index] = event
                else:
                    return event
            return None

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        gathering = asyncio.ensure_future(gather())
        watching = asyncio.ensure_future(disconnected())
        try:
            finished, _ = await asyncio.wait({gathering, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not gathering.done():  # the client left (or the server is stopping): drop the job
                gathering.cancel()
                job.cancel()
        if gathering not in finished:
            with contextlib.suppress(asyncio.CancelledError):
                await gathering
            log.info("decodekit serve: client left; request cancelled")
            return None
        failed = gathering.result()
        if failed is not None:
            raise APIError(failed.status, failed.message)
        return emitted, done

    def log_done(self, ident: str, prompt_tokens: int, done: dict[int, Done], started: float,
                 prompts: list | None = None) -> None:
        tokens = sum(len(d.result.token_ids) for d in done.values())
        log.info("decodekit serve: %s: %d prompt tokens, %d choices, %d completion tokens, %.3f s", ident,
                 prompt_tokens, len(done), tokens, time.perf_counter() - started)
        if self.config.log_prompts and prompts is not None:
            log.info("decodekit serve: %s prompt: %r; outputs: %r", ident, prompts,
                     [d.result.text for _, d in sorted(done.items())])

    # --- routes ---

    async def health(self, request: Request) -> Response:
        if self.stopping:
            return JSONResponse({"status": "shutting down"}, 503)
        scheduler = self.engine.scheduler
        return JSONResponse({"status": "ok", "model": self.engine.name, "active": scheduler.active,
                             "waiting": scheduler.waiting})

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card(self.engine.name, self.engine.created)]})

    async def metrics(self, request: Request) -> Response:
        return Response(self.engine.metrics.render(), media_type=CONTENT_TYPE)

    async def chat(self, request: Request) -> Response:
        parsed = parse_chat(await self.read_json(request))
        params = parsed.params
        self.check_model(params)
        prompt = self.engine.encode_chat(parsed.messages)
        job = self.submit([prompt], params, "messages")
        ident, created, started = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), time.perf_counter()
        method = params.method or self.config.method
        if params.stream:
            return StreamingResponse(self.chat_stream(job, params, prompt, ident, created, method, started),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        collected = await self.collect(job, request)
        if collected is None:
            return Response(status_code=499)
        emitted, done = collected
        choices = []
        for i, d in sorted(done.items()):
            events = emitted.get(i, [])
            logprobs = None
            if params.logprobs is not None:
                logprobs = chat_logprobs([e for event in events for e in self.entries(event)])
            choices.append(chat_choice(i, d.result.text, d.result.finish_reason, logprobs))
        completion = sum(len(d.result.token_ids) for d in done.values())
        self.log_done(ident, len(prompt), done, started, parsed.messages)
        return JSONResponse(chat_completion(ident, created, self.engine.name, choices,
                                            usage(len(prompt), completion), self.stats(method, done)))

    async def chat_stream(self, job: Job, params: Params, prompt: list[int], ident: str, created: int,
                          method: str, started: float) -> AsyncIterator[str]:
        name = self.engine.name
        done: dict[int, Done] = {}
        try:
            yield sse(chat_chunk(ident, created, name, [chat_delta(i, {"role": "assistant", "content": ""})
                                                        for i in range(job.choices)]))
            async for event in job.events():
                if isinstance(event, Emitted):
                    logprobs = chat_logprobs(self.entries(event)) if params.logprobs is not None else None
                    if event.text or logprobs is not None:
                        yield sse(chat_chunk(ident, created, name,
                                             [chat_delta(event.index, {"content": event.text}, None, logprobs)]))
                elif isinstance(event, Done):
                    done[event.index] = event
                    last = job.finished and not params.include_usage
                    yield sse(chat_chunk(ident, created, name,
                                         [chat_delta(event.index, {}, event.result.finish_reason)],
                                         stats=self.stats(method, done) if last else None))
                else:
                    yield sse(APIError(event.status, event.message).body())
                    return
            if params.include_usage:
                completion = sum(len(d.result.token_ids) for d in done.values())
                yield sse(chat_chunk(ident, created, name, [], usage(len(prompt), completion),
                                     self.stats(method, done)))
            yield sse("[DONE]")
            self.log_done(ident, len(prompt), done, started)
        finally:
            if not job.finished:
                job.cancel()
                log.info("decodekit serve: %s: stream closed early; request cancelled", ident)

    async def completions(self, request: Request) -> Response:
        parsed = parse_completion(await self.read_json(request))
        params = parsed.params
        self.check_model(params)
        prompts = [self.engine.encode_prompt(p) for p in parsed.prompts]
        job = self.submit(prompts, params, "prompt")
        ident, created, started = f"cmpl-{uuid.uuid4().hex}", int(time.time()), time.perf_counter()
        method = params.method or self.config.method
        prompt_tokens = sum(len(p) for p in prompts) * params.n
        if params.stream:
            return StreamingResponse(self.completion_stream(job, params, prompt_tokens, ident, created, method,
                                                            started),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        collected = await self.collect(job, request)
        if collected is None:
            return Response(status_code=499)
        emitted, done = collected
        choices = []
        for i, d in sorted(done.items()):
            logprobs = None
            if params.logprobs is not None:
                logprobs = completion_logprobs([e for event in emitted.get(i, []) for e in self.entries(event)])
            choices.append(text_choice(i, d.result.text, d.result.finish_reason, logprobs))
        completion = sum(len(d.result.token_ids) for d in done.values())
        self.log_done(ident, prompt_tokens, done, started, parsed.prompts)
        return JSONResponse(text_completion(ident, created, self.engine.name, choices,
                                            usage(prompt_tokens, completion), self.stats(method, done)))

    async def completion_stream(self, job: Job, params: Params, prompt_tokens: int, ident: str, created: int,
                                method: str, started: float) -> AsyncIterator[str]:
        name = self.engine.name
        done: dict[int, Done] = {}
        offsets: dict[int, int] = {}
        try:
            async for event in job.events():
                if isinstance(event, Emitted):
                    logprobs = None
                    if params.logprobs is not None:
                        logprobs = completion_logprobs(self.entries(event), offsets.get(event.index, 0))
                    offsets[event.index] = offsets.get(event.index, 0) + len(event.text)
                    if event.text or logprobs is not None:
                        yield sse(text_completion(ident, created, name, [text_choice(event.index, event.text, None,
                                                                                     logprobs)], None, None, True))
                elif isinstance(event, Done):
                    done[event.index] = event
                    last = job.finished and not params.include_usage
                    yield sse(text_completion(ident, created, name,
                                              [text_choice(event.index, "", event.result.finish_reason, None)],
                                              None, self.stats(method, done) if last else None, True))
                else:
                    yield sse(APIError(event.status, event.message).body())
                    return
            if params.include_usage:
                completion = sum(len(d.result.token_ids) for d in done.values())
                yield sse(text_completion(ident, created, name, [], usage(prompt_tokens, completion),
                                          self.stats(method, done), True))
            yield sse("[DONE]")
            self.log_done(ident, prompt_tokens, done, started)
        finally:
            if not job.finished:
                job.cancel()
                log.info("decodekit serve: %s: stream closed early; request cancelled", ident)


def build_app(engine: Engine) -> Starlette:
    """The server's ASGI app over `engine`: its lifespan starts the scheduler and, on shutdown, gives queued
    and running requests `shutdown_grace` seconds before failing them."""
    routes = Routes(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        engine.scheduler.start()
        try:
            yield
        finally:
            routes.stopping = True
            await asyncio.get_running_loop().run_in_executor(None, engine.scheduler.stop,
                                                             engine.config.shutdown_grace)

    async def http_error(request: Request, error: HTTPException) -> Response:
        return error_response(APIError(error.status_code, str(error.detail)))

    app = Starlette(
        routes=[
            Route("/health", routes.endpoint("health", routes.health), methods=["GET"]),
            Route("/metrics", routes.endpoint("metrics", routes.metrics), methods=["GET"]),
            Route("/v1/models", routes.endpoint("models", routes.models), methods=["GET"]),
            Route("/v1/chat/completions", routes.endpoint("chat", routes.chat), methods=["POST"]),
            Route("/v1/completions", routes.endpoint("completions", routes.completions), methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    if engine.config.api_key:
        app.add_middleware(BearerAuth, key=engine.config.api_key)
    return app
