"""`decodekit serve` as clients see it: a real server process on 127.0.0.1 with the embedded SmolLM2 in float32,
driven by the official `openai` client and by raw HTTP for what a client library would not send.

One server (pld, 4 sequences per step, a queue of 4, an API key) serves the API tests, the error cases, a
load test (16 greedy requests of 8 tokens from 8 concurrent clients, each equal to its solo run) and the fault tests (a
client that disconnects mid-stream, one that reads slowly, a full queue) after which it still answers. A
second server is stopped with SIGTERM while it streams, and finishes the stream before it exits. A third, in
the default precision (`--dtype auto`: q4 where its verification is exact here) and the default method
(`auto`, its drafts sized by the batch), passes the same load test.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.integration

KEY = "test-key-0123456789"
MODEL = "smollm2-135m"
MARKER = "zebra-marmalade-7781"  # prompt text that must never reach the log
SRC = str(Path(__file__).resolve().parents[1] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port, self.process, self.log = port, process, log

    def client(self, key: str = KEY, **kwargs) -> "openai.OpenAI":
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=0,
                             timeout=kwargs.pop("timeout", 120), **kwargs)

    def request(self, method: str, path: str, body: bytes | dict | None = None, key: str | None = KEY,
                headers: dict | None = None) -> tuple[int, dict, object]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
                **(headers or {})}
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")
        return response.status, dict(response.getheaders()), payload

    def metric(self, name: str) -> float:
        _, _, text = self.request("GET", "/metrics")
        match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


@contextmanager
def running_server(tmp_path: Path, *args: str, dtype: str = "float32"):
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DECODEKIT_API_KEY", None)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "decodekit", "serve", "--model", MODEL, "--dtype", dtype,
                                    "--port", str(port), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(port, process, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if server.request("GET", "/health", key=None)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come up:\n{log.read_text()}")
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("serve"), "--method", "pld", "--max-batch", "4", "--max-queue", "4",
                        "--api-key", KEY, "--max-tokens", "64", "--request-timeout", "120") as running:
        yield running


def chat(client, content: str, **kwargs):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                          **{"temperature": 0, "max_tokens": 10, **kwargs})


def test_chat_and_completions_through_the_openai_client(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == [MODEL]
    reply = client.chat.completions.create(model=MODEL, temperature=0, max_completion_tokens=10, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another one?"}])
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 10 and reply.usage.prompt_tokens > 20
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    stats = reply.model_extra["decodekit"]
    assert stats["method"] == "pld" and stats["choices"][0]["new_tokens"] == reply.usage.completion_tokens
    completion = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8,
                                           temperature=0, extra_body={"decodekit": {"method": "ar"}})
    assert completion.choices[0].text and completion.usage.completion_tokens == 8
    assert completion.model_extra["decodekit"]["method"] == "ar"
    assert completion.model_extra["decodekit"]["choices"][0]["forward_passes"] == 8 + 1  # ar: one per token


def test_a_streamed_chat_equals_the_whole_answer(server):
    client = server.client()
    whole = chat(client, "Write one sentence about the sea.", max_tokens=16)
    chunks = list(chat(client, "Write one sentence about the sea.", max_tokens=16, stream=True,
                       stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].model_extra["decodekit"]["choices"][0]["new_tokens"] == whole.usage.completion_tokens


def test_a_json_schema_response_format_gives_valid_json_streamed_or_not(server):
    import jsonschema

    client = server.client()
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    whole = chat(client, "Invent a person: a JSON object with a name and an age.", max_tokens=48,
                 response_format=response_format)
    assert whole.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(whole.choices[0].message.content), schema)
    chunks = list(chat(client, "Invent a person: a JSON object with a name and an age.", max_tokens=48,
                       response_format=response_format, stream=True, extra_body={"decodekit": {"method": "ar"}}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    json_object = chat(client, "Give me a JSON object.", max_tokens=32, response_format={"type": "json_object"})
    if json_object.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(json_object.choices[0].message.content), dict)


def test_stop_strings_cut_the_text_streamed_or_not(server):
    client = server.client()
    full = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=16, temperature=0)
    text = full.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip(), text
    cut = text[: text.find(stop)]
    stopped = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=16, temperature=0,
                                        stop=[stop, "never-there"])
    assert stopped.choices[0].text == cut and stopped.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=16, temperature=0,
                                              stop=stop, stream=True))
    pieces = [c.choices[0].text for c in streamed if c.choices]
    assert "".join(pieces) == cut and not any(stop in p for p in pieces)
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_seeds_make_sampling_reproducible_and_n_gives_choices(server):
    client = server.client()
    kwargs = dict(temperature=0.9, top_p=0.95, max_tokens=8)
    first = chat(client, "Tell me a word.", seed=1234, **kwargs).choices[0].message.content
    again = chat(client, "Tell me a word.", seed=1234, **kwargs).choices[0].message.content
    assert first == again
    several = chat(client, "Tell me a word.", seed=1234, n=3, **kwargs)
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert several.choices[0].message.content == first  # choice 0 samples with the seed itself
    assert several.usage.completion_tokens == sum(
        c["new_tokens"] for c in several.model_extra["decodekit"]["choices"])


def test_logprobs_come_with_each_token(server):
    reply = chat(server.client(), "Say hello.", max_tokens=6, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token  # greedy takes the most likely token
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob
    assert "".join(e.token for e in content).startswith(reply.choices[0].message.content[:3])


def test_every_endpoint_but_health_needs_the_key(server):
    assert server.request("GET", "/health", key=None)[0] == 200
    for key in (None, "wrong-key-0123456789"):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/metrics")):
            status, headers, body = server.request(method, path, {"model": MODEL}, key=key)
            assert status == 401 and body["error"]["type"] == "authentication_error"
            assert headers.get("www-authenticate") == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        chat(server.client(key="wrong-key-0123456789"), "hi")


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, 400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 9}, 400, "temperature"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role"),
    ({"model": MODEL, "messages": []}, 400, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "frobnicate": 1}, 400, "frobnicate"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, 400,
     "tools"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}, 400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, 400,
     "stop"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
      "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wat"}}}}, 400,
     "response_format"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "decodekit": {"method": "nope"}}, 400,
     "decodekit.method"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
      "decodekit": {"method": "sam", "options": {"corpus": "/etc/passwd"}}}, 400, "decodekit.options.corpus"),
    ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ({"model": MODEL, "prompt": [1] * 9000, "max_tokens": 4}, 400, "prompt"),  # over the 8192-token context
    ({"model": MODEL, "prompt": "hi", "n": 9}, 400, "n"),  # more sequences than batch + queue
])
def test_bad_requests_get_an_openai_error_object(server, body, status, param):
    path = "/v1/completions" if isinstance(body, dict) and "prompt" in body else "/v1/chat/completions"
    got, _, answer = server.request("POST", path, body)
    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"} and answer["error"]["param"] == param
    assert "Traceback" not in json.dumps(answer)


def test_oversized_bodies_unknown_routes_and_wrong_verbs(server):
    status, _, answer = server.request("POST", "/v1/completions", {"model": MODEL, "prompt": "x" * 1_100_000})
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    status, _, answer = server.request("GET", "/v1/nothing-here")
    assert status == 404 and "error" in answer
    status, _, answer = server.request("GET", "/v1/chat/completions")
    assert status == 405 and "error" in answer


def test_load_every_concurrent_response_equals_its_solo_run(server):
    concurrent_equals_solo(server)


def test_load_in_the_default_precision_and_method(tmp_path):
    with running_server(tmp_path, "--max-batch", "4", "--api-key", KEY, "--max-tokens", "64", dtype="auto") as running:
        concurrent_equals_solo(running, max_tokens=32)


def concurrent_equals_solo(server, max_tokens: int = 8):
    """16 greedy requests from 8 clients at once, each equal to the same prompt asked alone."""
    prompts = [f"Give me fact number {i} about {topic}." for i, topic in
               enumerate(["cats", "the moon", "rivers", "bread", "chess", "volcanoes", "owls", "glass"])]
    client = server.client()
    solo = {p: chat(client, p, max_tokens=max_tokens).choices[0].message.content for p in prompts}
    steps_before = server.metric("decodekit_batch_size_count")
    singles_before = server.metric('decodekit_batch_size_bucket{le="1.0"}')

    def ask(prompt):
        reply = chat(server.client(), prompt, max_tokens=max_tokens)
        return prompt, reply.choices[0].message.content, reply.choices[0].finish_reason

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, prompts * 2))
    assert len(answers) == 16
    for prompt, text, finish in answers:
        assert finish in ("stop", "length") and text == solo[prompt], prompt
    steps = server.metric("decodekit_batch_size_count") - steps_before
    singles = server.metric('decodekit_batch_size_bucket{le="1.0"}') - singles_before
    assert steps > 0 and singles < steps  # most steps carried several sequences


def raw_stream(server: Server, max_tokens: int, receive_buffer: int | None = None) -> socket.socket:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Count from one to a thousand."}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True}).encode()
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(120)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def wait_idle(server: Server, seconds: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        health = server.request("GET", "/health", key=None)[2]
        if health["active"] == 0 and health["waiting"] == 0:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"still busy after {seconds} s: {health}")


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    cancelled = server.metric("decodekit_cancelled_total")
    sock = raw_stream(server, 64)
    data = b""
    while data.count(b"data:") < 3:  # the role chunk and two deltas: the sequence is running
        data += sock.recv(4096)
    sock.close()
    wait_idle(server)  # long before its 64 tokens could have been generated
    assert server.metric("decodekit_cancelled_total") == cancelled + 1
    assert chat(server.client(), "Still there?", max_tokens=4).choices[0].message.content


def test_a_client_that_leaves_before_a_whole_answer_frees_its_slot(server):
    cancelled = server.metric("decodekit_cancelled_total")
    body = json.dumps({"model": MODEL, "prompt": "Count from one to a thousand:", "max_tokens": 64,
                       "temperature": 0}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    deadline = time.monotonic() + 30
    while server.request("GET", "/health", key=None)[2]["active"] == 0:  # wait until it runs
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sock.close()
    wait_idle(server)
    assert server.metric("decodekit_cancelled_total") == cancelled + 1


def test_a_slow_reader_stalls_no_one_and_gets_its_whole_stream(server):
    sock = raw_stream(server, 32, receive_buffer=1024)
    time.sleep(0.5)
    start = time.monotonic()
    others = [chat(server.client(timeout=60), f"Name a {thing}.", max_tokens=8) for thing in ("fruit", "tree")]
    assert all(o.choices[0].message.content for o in others)
    assert time.monotonic() - start < 60
    response = http.client.HTTPResponse(sock)  # only now does the client start reading
    response.begin()
    data = response.read()  # de-chunked
    sock.close()
    assert response.status == 200 and data.rstrip().endswith(b"data: [DONE]")
    events = [json.loads(line[6:]) for line in data.decode().splitlines() if line.startswith("data: {")]
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text == chat(server.client(), "Count from one to a thousand.", max_tokens=32).choices[0].message.content


def test_a_full_queue_answers_429_with_retry_after_and_recovers(server):
    wait_idle(server)
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: server.request("POST", "/v1/completions", body), range(12)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses.count(429) >= 1 and statuses.count(200) >= 8, statuses
    refused = next(a for a in answers if a[0] == 429)
    assert refused[1].get("retry-after") == "1" and refused[2]["error"]["type"] == "rate_limit_error"
    texts = {a[2]["choices"][0]["text"] for a in answers if a[0] == 200}
    assert len(texts) == 1  # the same greedy answer whoever shared the batch
    wait_idle(server)
    assert server.request("POST", "/v1/completions", body)[0] == 200


def test_logs_carry_no_prompt_text(server):
    chat(server.client(), f"Repeat after me: {MARKER}", max_tokens=12)
    assert MARKER not in server.log.read_text(errors="replace")
    assert "Traceback" not in server.log.read_text(errors="replace")


def test_sigterm_finishes_the_stream_in_flight_then_exits(tmp_path):
    with running_server(tmp_path, "--method", "ar", "--shutdown-grace", "60") as stopping:
        stream = chat(stopping.client(key="none"), "Describe a forest.", max_tokens=40, stream=True,
                      stream_options={"include_usage": True})
        chunks = [next(stream), next(stream)]  # the role chunk and the first delta
        stopping.process.send_signal(signal.SIGTERM)
        chunks += list(stream)
        assert chunks[-1].usage.completion_tokens == 40
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        # uvicorn re-raises the signal once it has shut down, so the exit status is the signal's
        assert stopping.process.wait(60) in (0, -signal.SIGTERM)
    log = stopping.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log
