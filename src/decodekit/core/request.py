"""A decoding request: the prompt, the length limit, sampling, stop strings, processors and the draft budget,
checked when it is made so that a bad value fails before any model work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from decodekit.defaults import NUM_DRAFT
from decodekit.errors import ParameterError, UserError
from decodekit.sampling import LogitsProcessor, SamplingConfig

MAX_LOGPROBS = 20  # the most alternatives a request may ask the log-probabilities of


@dataclass
class DecodeRequest:
    prompt_ids: list[int]
    max_new_tokens: int = 256
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stop: Sequence[str] = ()
    num_draft: int = NUM_DRAFT  # the most draft nodes per step
    processors: Sequence[LogitsProcessor] = ()  # this request's own (a grammar, ...), applied after the penalty
    logprobs: int | None = None  # None: none recorded; k: each committed token's log-probability and the top k

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise UserError("the prompt is empty")
        if self.max_new_tokens < 1:
            raise ParameterError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        if self.num_draft < 1:
            raise ParameterError("num_draft", f"must be at least 1, got {self.num_draft}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ParameterError("logprobs", f"must be between 0 and {MAX_LOGPROBS}, got {self.logprobs}")
        if any(not s for s in self.stop):
            raise UserError("stop strings must not be empty")


def check_request(max_new_tokens: int, sampling: SamplingConfig, stop: Sequence[str], num_draft: int) -> None:
    """The checks of a request that can run before a prompt is encoded (before any model loads)."""
    DecodeRequest([0], max_new_tokens, sampling, stop, num_draft)
