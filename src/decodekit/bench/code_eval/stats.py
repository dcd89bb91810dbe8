"""The statistics of pass@1: a Wilson interval for one method, an exact McNemar test for two methods on the
same problems, and the `code` block of summary.json.

- pass@1 (one greedy or seeded sample per problem): solved problems over attempted ones. A generation that
  raised (a FailedRow) counts as attempted and not solved.
- pass_at_1_ci95: the Wilson score interval at 95% (z = 1.959964), which stays inside [0, 1] and is sane at
  0 and n solved.
- vs_ar: the paired comparison with greedy `ar` on the problems both attempted: `only_method` (solved by
  the method, not by ar), `only_ar`, `both`, `neither`, and the exact McNemar p-value: two-sided, the
  binomial(only_method + only_ar, 1/2) probability of a split at least as uneven (1.0 when they never
  disagree), computed with integers here (no scipy).
- seconds_per_problem: the method's mean generation time per problem (the sandbox's time not included);
  tokens_per_second: new tokens over generation time.
- reasons: how many problems ended each way (`passed`, `failed`, `timeout`, `memory`, `forbidden: socket`,
  `crashed`, `no code`, `generation error`).
"""

from __future__ import annotations

import math
from collections import Counter

Z95 = 1.959964


def wilson(solved: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion solved/n; None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= solved <= n:
        raise ValueError(f"solved must lie in [0, {n}], got {solved}")
    p = solved / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_two_sided(k: int, n: int) -> float:
    """The exact two-sided p-value of k successes in n trials of probability 1/2 (the sum of the outcomes
    no more likely than k, which for p = 1/2 is twice the smaller tail, capped at 1)."""
    if n == 0:
        return 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, {n}], got {k}")
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """The exact McNemar p-value from the discordant pairs of a paired comparison."""
    return binomial_two_sided(only_a, only_a + only_b)


def _reason(row: dict) -> str:
    if row.get("error"):
        return "generation error"
    reason = row.get("check_reason") or "unchecked"
    return reason if reason.startswith("forbidden") else reason.split(":")[0]


def code_problems(rows: list[dict]) -> set:
    """The (question_id, turn) keys of the code problems: those with a checked generation, and those of a
    code category (one with checked generations) where a method raised."""
    checked = [r for r in rows if r.get("passed") is not None]
    categories = {r["category"] for r in checked}
    return ({(r["question_id"], r["turn"]) for r in checked}
            | {(r["question_id"], r["turn"]) for r in rows if r.get("error") and r["category"] in categories})


def code_block(rows: list[dict], method: str, reference: str = "ar") -> dict | None:
    """summary.json's `code` block of one method (see the module docstring); None without code rows."""
    keys = code_problems(rows)
    if not keys:
        return None

    def solved_by(name: str) -> dict:
        return {(r["question_id"], r["turn"]): bool(r.get("passed")) for r in rows
                if r["method"] == name and (r["question_id"], r["turn"]) in keys}

    mine = solved_by(method)
    if not mine:
        return None
    solved = sum(mine.values())
    interval = wilson(solved, len(mine))
    generated = [r for r in rows if r["method"] == method and not r.get("error")
                 and (r["question_id"], r["turn"]) in keys]
    seconds = sum(r["seconds"] for r in generated)
    block = {
        "problems": len(mine),
        "solved": solved,
        "pass_at_1": round(solved / len(mine), 4),
        "pass_at_1_ci95": [round(v, 4) for v in interval],
        "seconds_per_problem": round(seconds / len(generated), 4) if generated else None,
        "tokens_per_second": round(sum(r["new_tokens"] for r in generated) / seconds, 4) if seconds else None,
        "reasons": dict(Counter(_reason(r) for r in rows if r["method"] == method
                                and (r["question_id"], r["turn"]) in keys)),
        "vs_ar": None,
    }
    if method != reference:
        theirs = solved_by(reference)
        common = [k for k in mine if k in theirs]
        if common:
            only_method = sum(mine[k] and not theirs[k] for k in common)
            only_ar = sum(theirs[k] and not mine[k] for k in common)
            block["vs_ar"] = {"problems": len(common), "only_method": only_method, "only_ar": only_ar,
                              "both": sum(mine[k] and theirs[k] for k in common),
                              "neither": sum(not mine[k] and not theirs[k] for k in common),
                              "p_value": round(mcnemar_exact(only_method, only_ar), 4)}
    return block
