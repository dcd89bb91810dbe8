"""The rows of results.jsonl, typed: one `ResultRow` per prompt, turn and method that generated, one
`FailedRow` where the method raised. A code suite's rows also say whether the reply passed its tests
(`passed`, `check_reason`, `check_seconds`, filled in by code_eval/score.py), and a method with an uncertainty
gate says at how many positions it fired (`gate_fired` of `gate_positions`). `to_json()` gives the row as it is written, with the keys that earlier
runs have (so `bench --compare` and the report read old and new runs alike)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from decodekit.bench.outcome import Outcome
from decodekit.bench.suites import Prompt
from decodekit.models.loaded import LoadedModel
from decodekit.text import TextAssembler


@dataclass(frozen=True)
class ResultRow:
    question_id: object
    category: str
    turn: int  # from 1
    method: str
    prompt_tokens: int
    new_tokens: int
    finish_reason: str
    seconds: float | None  # the median over the repeats, as are the other clocks
    seconds_runs: list[float]
    prefill_seconds: float | None
    draft_seconds: float | None
    verify_seconds: float | None
    forward_passes: int
    steps: int
    draft_forward_passes: int | None
    drafted_tokens: int | None
    accepted_tokens: int | None
    tokens_per_second: float | None
    mean_accepted: float | None
    repeats_agree: bool
    reference: object  # the suite's reference answer for this turn, if any
    turn_text: str
    text: str
    token_ids: list[int]
    pieces: list[str]  # each token's text as it appeared in the stream
    special: list[list]  # [position, token] of the special tokens
    trace: list[dict] | None  # the step trace, drafted tokens as text
    error: None = None
    identical_to_ar: bool | None = None  # None where ar has no row for this turn
    diverges_at: int | None = None
    gate_fired: int | None = None  # positions where the method's uncertainty gate fired (None: no gate)
    gate_positions: int | None = None  # the positions the gate looked at
    passed: bool | None = None  # a code problem: whether the reply passed its tests (None: not a code row)
    check_reason: str | None = None  # the sandbox's reason (code_eval/sandbox.py)
    check_seconds: float | None = None  # the sandbox's wall time

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FailedRow:
    question_id: object
    category: str
    turn: int
    method: str
    error: str  # the exception's type and message

    def to_json(self) -> dict:
        return asdict(self)


def diverges_at(reference: list[int], tokens: list[int]) -> int | None:
    """The first position where two token sequences differ (the shorter one's length when one is a
    prefix of the other); None when they are identical."""
    for position, (a, b) in enumerate(zip(reference, tokens)):
        if a != b:
            return position
    return None if len(reference) == len(tokens) else min(len(reference), len(tokens))


def _median(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def result_row(model: LoadedModel, prompt: Prompt, turn: int, method: str, prompt_ids: list[int],
               runs: list[Outcome]) -> ResultRow:
    """The row of one generation (turn from 0): the first run's tokens and counts, the median clocks."""
    first = runs[0]
    assembler = TextAssembler(model.tokenizer)
    pieces = [assembler.push(token) for token in first.token_ids]
    specials = set(model.tokenizer.all_special_ids)
    special = [[i, model.tokenizer.convert_ids_to_tokens(t)] for i, t in enumerate(first.token_ids)
               if t in specials]
    trace = None
    if first.trace is not None:
        trace = [dict(step, drafted=[model.tokenizer.decode([t]) for t in step["drafted"]])
                 for step in first.trace]
    seconds = _median([r.seconds for r in runs])
    new_tokens = len(first.token_ids)
    return ResultRow(
        question_id=prompt.question_id, category=prompt.category, turn=turn + 1, method=method,
        prompt_tokens=len(prompt_ids), new_tokens=new_tokens, finish_reason=first.finish_reason,
        seconds=seconds, seconds_runs=[r.seconds for r in runs],
        prefill_seconds=_median([r.prefill_seconds for r in runs]),
        draft_seconds=_median([r.draft_seconds for r in runs]),
        verify_seconds=_median([r.verify_seconds for r in runs]),
        forward_passes=first.forward_passes, steps=first.steps, draft_forward_passes=first.draft_forward_passes,
        drafted_tokens=first.drafted_tokens, accepted_tokens=first.accepted_tokens,
        tokens_per_second=new_tokens / seconds if seconds else None,
        mean_accepted=new_tokens / first.steps if first.steps else None,
        repeats_agree=all(r.token_ids == first.token_ids for r in runs),
        reference=prompt.reference[turn] if turn < len(prompt.reference) else None,
        turn_text=prompt.turns[turn], text=assembler.text, token_ids=first.token_ids, pieces=pieces,
        special=special, trace=trace, gate_fired=first.gate_fired, gate_positions=first.gate_positions,
    )


def failed_row(prompt: Prompt, turn: int, method: str, error: str) -> FailedRow:
    return FailedRow(prompt.question_id, prompt.category, turn + 1, method, error)
