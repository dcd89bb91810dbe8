"""What one timed generation yields, whichever decoder ran it: tokens, clocks and counts.

Counts follow each decoder's own loop. A decodekit method's `steps` are its loop's target forwards after
the prefill (`forward_passes` adds the prefill). An external baseline's prefill forward already yields the
first token, so there every target forward is a step. Either way `new tokens / steps` is the mean number of
tokens that one target forward committed (Spec-Bench's "mean accepted tokens", which counts the bonus
token), and a clock the decoder cannot split is None rather than a guess. A method with an uncertainty gate
(quality methods) reports on how many steps it fired (`gate_fired`, see gate_count).
"""

from __future__ import annotations

from dataclasses import dataclass

from decodekit.trace import GenerationResult


@dataclass
class Outcome:
    token_ids: list[int]
    finish_reason: str  # "eos" or "length"
    seconds: float  # prompt ids in, last token out: the prefill and every step
    forward_passes: int  # target forwards, the prefill included
    steps: int  # target forwards that committed tokens
    prefill_seconds: float | None = None
    draft_forward_passes: int = 0  # forwards of a separate draft model
    draft_seconds: float | None = None  # time spent proposing drafts (None: not measurable)
    verify_seconds: float | None = None  # time in target forwards and acceptance
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None
    trace: list[dict] | None = None  # per step: committed (count), drafted (ids), parents, accepted (node indices)
    gate_fired: int | None = None  # steps where an uncertainty gate fired; None for a method without one

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
            gate_fired=gate_count(result),
        )


def gate_count(result: GenerationResult) -> int | None:
    """On how many steps a method's uncertainty gate fired: `result.stats["gate_fired"]` (an int) where the
    method reports it, else the steps whose record has a true `gate_fired` where step records carry that
    attribute; None for a method without a gate."""
    counted = result.stats.get("gate_fired")
    if counted is not None:
        return int(counted)
    if any(hasattr(step, "gate_fired") for step in result.steps):
        return sum(bool(getattr(step, "gate_fired", False)) for step in result.steps)
    return None
