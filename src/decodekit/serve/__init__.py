"""`decodekit serve`: an OpenAI-compatible HTTP server with continuous batching over the speculative engine.

config.py      ServeConfig: the server's options, checked before any model loads
openai_schema  the chat-completions and completions requests, checked, and the response shapes
engine.py      the served model: prompts to the scheduler's works, methods, decoders, learning scopes
scheduler.py   continuous batching: one worker thread, one batched step over every active sequence
release.py     the text a stream may send yet (none that could start a stop string)
job.py         one request in flight: its works and the queue their events arrive on
app.py         the Starlette app and its routes (build_app)
metrics.py     Prometheus metrics, one registry per server
server.py      uvicorn over the app, with graceful shutdown
bench.py       `decodekit bench-serve`: the server measured from outside by streaming clients (its servers are
               child processes, bench/server_process.py; its baseline llama.cpp's own server,
               bench/baselines/llama_server.py)

Nothing here is imported by the layers below (serve is an interface, like the CLI); this package's own
modules are imported where they are used, so that `decodekit --help` does not load the web stack.
"""
