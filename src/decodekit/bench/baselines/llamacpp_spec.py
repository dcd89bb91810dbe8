"""The `llamacpp-spec` baseline: llama.cpp's own draft-model speculative decoding, as llama-server runs it.

llama-cpp-python exposes no draft-model speculation of llama.cpp's (only a Python hook for a drafter), so
this baseline runs llama.cpp's C++ implementation where users meet it: `llama-server` (built by `make
llamacpp-tools` from the same vendored sources as `make llamacpp`) with `--model-draft` and `--spec-type
draft-simple`, one slot, and llama.cpp's defaults for everything else (at most 3 drafted tokens a step,
`--spec-draft-n-max`; no minimum draft probability). Greedy verification at temperature 0, llama.cpp's
stochastic rule above it.

Each generation is one `/completion` request with the prompt's token ids (so no BOS is added and the input is
the one decodekit's methods read), the prompt cache off, and the generated token ids returned; `seconds` is
the request's wall time on the loopback socket, so it includes the prefill as every method's does. What
llama-server does not report stays unknown: it gives the drafted and accepted token counts, from which the
target forwards follow (each commits one token plus those it accepted), but neither the draft model's
forwards nor the split between drafting and verifying.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import time
import weakref
from pathlib import Path

import torch

from decodekit.bench import server_process as process
from decodekit.bench.baselines.llama_server import llama_server_binary, llama_server_command
from decodekit.bench.outcome import Outcome
from decodekit.sampling import SamplingConfig

SPEC_TYPE = "draft-simple"


class LlamaServerSpeculative:
    """llama-server with a draft model, one request per generation."""

    def __init__(self, gguf: Path, draft_gguf: Path, n_ctx: int) -> None:
        threads = torch.get_num_threads()
        self.port = process.free_port()
        command = llama_server_command(llama_server_binary(), gguf, self.port, 1, n_ctx, threads) + [
            "--model-draft", str(draft_gguf), "--spec-type", SPEC_TYPE, "--no-warmup"]
        log = Path(tempfile.gettempdir()) / f"decodekit-llamacpp-spec-{self.port}.log"
        self.server = process.start(command, self.port, log, "llama-server (llamacpp-spec)")
        # stopped by close(), else when this object is collected or the interpreter exits: never left behind
        self._stop = weakref.finalize(self, process.stop, self.server, 30)
        self.n_ctx = n_ctx

    def __call__(self, prompt_ids: list[int], max_new_tokens: int, sampling: SamplingConfig) -> Outcome:
        limit = min(max_new_tokens, self.n_ctx - len(prompt_ids))
        body = {"prompt": list(prompt_ids), "n_predict": limit, "temperature": sampling.temperature,
                "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0,
                "cache_prompt": False, "return_tokens": True, "stream": False}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        start = time.perf_counter()
        reply = self._post("/completion", body)
        seconds = time.perf_counter() - start
        tokens = [int(t) for t in reply["tokens"]]
        timings = reply.get("timings", {})
        drafted, accepted = timings.get("draft_n"), timings.get("draft_n_accepted")
        steps = len(tokens) - accepted if accepted is not None else len(tokens)
        return Outcome(
            token_ids=tokens, finish_reason="eos" if reply.get("stop_type") == "eos" else "length",
            seconds=seconds, forward_passes=steps, steps=steps,
            prefill_seconds=timings["prompt_ms"] / 1000 if "prompt_ms" in timings else None,
            draft_forward_passes=None, draft_seconds=None, verify_seconds=None,
            drafted_tokens=drafted, accepted_tokens=accepted,
        )

    def _post(self, path: str, body: dict) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3600)
        try:
            connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"llama-server answered {response.status}: {payload[:300].decode(errors='replace')}")
        return json.loads(payload)

    def close(self) -> None:
        self._stop()
