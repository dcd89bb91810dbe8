"""One request as a stream: iterate a `Decoding` for text deltas; `result` holds the GenerationResult once it
is exhausted. A thin wrapper over the step functions (step.py)."""

from __future__ import annotations

from collections.abc import Iterator

from decodekit.core import DecodeRequest
from decodekit.models.loaded import LoadedModel
from decodekit.speculative.decoder import Decoder
from decodekit.speculative.step import prefill, result, step
from decodekit.trace import GenerationResult


class Decoding:
    def __init__(self, model: LoadedModel, request: DecodeRequest, decoder: Decoder, method: str) -> None:
        self.model = model
        self.request = request
        self.decoder = decoder
        self.method = method
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        state = prefill(self.model, self.request, self.decoder, self.method)
        while not state.finished:
            delta = step(state).delta
            if delta:
                yield delta
        self.result = result(state)

    def run(self) -> GenerationResult:
        for _ in self:
            pass
        assert self.result is not None
        return self.result
