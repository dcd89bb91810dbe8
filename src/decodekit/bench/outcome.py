"""What one timed generation yields, whichever decoder ran it: tokens, clocks and counts.

Counts follow each decoder's own loop. A decodekit method's `steps` are its loop's target forwards after
the prefill (`forward_passes` adds the prefill). An external baseline's prefill forward already yields the
first token, so there every target forward is a step. Either way `new tokens / steps` is the mean number of
tokens that one target forward committed (Spec-Bench's "mean accepted tokens", which counts the bonus
token), and a clock the decoder cannot split is None rather than a guess. A method with an uncertainty gate
(quality methods) reports at how many of the positions it looked at it fired (`gate_fired` of
`gate_positions`, from the method's `quality` counters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from decodekit.trace import GenerationResult


@dataclass
class Outcome:
    token_ids: list[int]
    finish_reason: str  # "eos" or "length"
    seconds: float  # prompt ids in, last token out: the prefill and every step
    forward_passes: int  # target forwards, the prefill included
    steps: int  # target forwards that committed tokens
    prefill_seconds: float | None = None
    draft_forward_passes: int | None = 0  # forwards of a separate draft model (None: not reported)
    draft_seconds: float | None = None  # time spent proposing drafts (None: not measurable)
    verify_seconds: float | None = None  # time in target forwards and acceptance
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None
    trace: list[dict] | None = None  # per step: committed (count), drafted (ids), parents, accepted (node indices)
    gate_fired: int | None = None  # positions where an uncertainty gate fired; None for a method without one
    gate_positions: int | None = None  # the positions the gate looked at
    quality: dict[str, float] = field(default_factory=dict)  # a quality method's counters (GenerationResult.quality)

    @classmethod
    def from_result(cls, result: GenerationResult) -> Outcome:
        stats = result.stats
        return cls(
            token_ids=list(result.token_ids), finish_reason=result.finish_reason, seconds=result.seconds,
            forward_passes=result.forward_passes, steps=len(result.steps),
            prefill_seconds=result.prefill_seconds, draft_forward_passes=result.draft_forward_passes,
            draft_seconds=sum(s.draft_seconds for s in result.steps),
            verify_seconds=sum(s.verify_seconds for s in result.steps),
            drafted_tokens=stats["drafted_tokens"], accepted_tokens=result.accepted_tokens,
            trace=[{"committed": len(s.committed), "drafted": list(s.drafted), "parents": list(s.parents),
                    "accepted": list(s.accepted)} for s in result.steps],
            gate_fired=_count(result.quality.get("gate_fired")),
            gate_positions=_count(result.quality.get("gate_positions")),
            quality=dict(result.quality),
        )


def _count(value: float | None) -> int | None:
    """A gate counter of a quality method's `quality()` (quality/: `gate_fired`, `gate_positions`), or None."""
    return None if value is None else int(value)
