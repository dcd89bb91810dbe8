"""Scoring the rows of a run on a code suite: each generation's reply is turned into its program
(tasks.py) and run in the sandbox (sandbox.py), one after another, after every generation of the run (so
the sandbox's processes never share the machine with a timed generation).

A ResultRow of a code prompt gets `passed`, `check_reason` (the sandbox's reason: `passed`,
`failed: ...`, `timeout`, `memory`, `forbidden: ...`, `crashed: ...`, or `no code` when the reply holds no
code) and `check_seconds`; the rows of other prompts, and FailedRows (the method raised: no reply to
check), are left as they are. A hostile or broken reply fails its own problem only: the next row is
checked as usual. Default limits: 10 s wall clock, 1 GiB of address space, 16 MiB per file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from decodekit.bench.code_eval.sandbox import Limits, Verdict, run_program
from decodekit.bench.rows import FailedRow, ResultRow
from decodekit.bench.suites import Suite


def check_reply(task, reply: str, limits: Limits = Limits()) -> Verdict:
    """The sandbox's verdict on one reply to a code task."""
    program = task.program(reply)
    if program is None:
        return Verdict(False, "no code", 0.0)
    return run_program(program, limits)


def score_rows(rows: list[ResultRow | FailedRow], suite: Suite, limits: Limits = Limits(),
               advance: Callable[[str], None] = lambda label: None) -> list[ResultRow | FailedRow]:
    """The rows with the code prompts' generations checked (module docstring), in the same order."""
    tasks = {p.question_id: p.code for p in suite.prompts if p.code is not None}
    scored = []
    for row in rows:
        task = tasks.get(row.question_id)
        if isinstance(row, ResultRow) and task is not None:
            advance(f"{row.question_id} check {row.method}")
            verdict = check_reply(task, row.text, limits)
            row = replace(row, passed=verdict.passed, check_reason=verdict.reason,
                          check_seconds=round(verdict.seconds, 4))
        scored.append(row)
    return scored


def count_checks(rows: list[ResultRow | FailedRow], suite: Suite) -> int:
    """How many rows score_rows will run in the sandbox."""
    coded = {p.question_id for p in suite.prompts if p.code is not None}
    return sum(isinstance(r, ResultRow) and r.question_id in coded for r in rows)
