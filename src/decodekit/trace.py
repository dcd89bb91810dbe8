"""What a generation returns: the text, the token ids, why it stopped, and a record of every step."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class StepRecord:
    """One target forward of the decoding loop."""

    committed: list[int]  # tokens committed by this step (accepted draft tokens + the target's token)
    drafted: list[int] = field(default_factory=list)  # the draft tree's tokens
    parents: list[int] = field(default_factory=list)  # the draft tree's parents (-1 = root)
    accepted: list[int] = field(default_factory=list)  # accepted draft node indices, root to leaf
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0  # the target forward and the acceptance rule
    entropy: list[float] = field(default_factory=list)  # per committed token, of the target distribution
    margin: list[float] = field(default_factory=list)  # per committed token: p(top-1) - p(top-2)
    varentropy: list[float] = field(default_factory=list)  # per committed token: the surprisal's variance
    # only when the request asks for them: per committed token, its log-probability under the processed
    # distribution it was chosen from, and the request's top-k (token, log-probability) pairs of that row
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    forced: int = 0  # committed tokens that a constraint proposed (its forced and fast-forward tokens)


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos", "stop" (a stop string), "length" (max_new_tokens or the context window)
    method: str
    prompt_tokens: int
    steps: list[StepRecord]
    seconds: float  # wall time of the whole generation, prefill included
    prefill_seconds: float
    draft_forward_passes: int = 0  # forwards of a separate draft model or of a layer-skipped target
    complete: bool | None = None  # whether the request's constraints accept the output (None: no constraint)
    # a quality method's counters (quality/): e.g. the share of tokens where its gate fired, or the share
    # each of two models produced; empty for the lossless methods
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def forward_passes(self) -> int:
        """Target forwards: the prefill (when the prompt has more than one token) and one per step."""
        return len(self.steps) + (1 if self.prompt_tokens > 1 else 0)

    @property
    def drafted_tokens(self) -> int:
        return sum(len(step.drafted) for step in self.steps)

    @property
    def accepted_tokens(self) -> int:
        return sum(len(step.accepted) for step in self.steps)

    @property
    def stats(self) -> dict:
        new_tokens = len(self.token_ids)
        drafted = self.drafted_tokens
        return {
            "new_tokens": new_tokens,
            "forward_passes": self.forward_passes,
            "steps": len(self.steps),
            "seconds": round(self.seconds, 4),
            "tokens_per_second": round(new_tokens / self.seconds, 2) if self.seconds > 0 else None,
            "mean_accepted": round(new_tokens / len(self.steps), 4) if self.steps else None,
            "acceptance_rate": round(self.accepted_tokens / drafted, 4) if drafted else None,
            "drafted_tokens": drafted,
            "draft_forward_passes": self.draft_forward_passes,
            "draft_seconds": round(sum(s.draft_seconds for s in self.steps), 4),
            "verify_seconds": round(sum(s.verify_seconds for s in self.steps), 4),
            "forced_tokens": sum(s.forced for s in self.steps),
        }

    def to_json(self, trace: bool = False) -> dict:
        data = {"text": self.text, "token_ids": self.token_ids, "finish_reason": self.finish_reason,
                "method": self.method, "stats": self.stats}
        if self.complete is not None:
            data["complete"] = self.complete
        if self.quality:
            data["quality"] = dict(self.quality)
        if trace:
            data["steps"] = [asdict(step) for step in self.steps]
        return data
