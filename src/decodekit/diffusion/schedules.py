"""Step schedules: how many tokens a fixed-schedule rule commits at each step, and SchED's margin schedules.

- ``llada_counts(n, steps)``: LLaDA's ``get_num_transfer_tokens`` (linear noise schedule): n masked tokens
  spread over ``steps`` steps, ``n // steps`` each and one more in the first ``n % steps`` steps.
- ``dream_count(n_masked, step, steps, eps=1e-3)``: Dream's ``k = int(n_masked * (1 - s/t))`` with
  ``t, s`` consecutive points of ``linspace(1, eps, steps + 1)`` (all remaining at the last step).
- ``margin_threshold(kind, p, high, low, k)``: SchED's non-increasing schedule tau(p) from ``high`` (7.5)
  to ``low`` at progress p in [0, 1]: ``linear`` high + (low - high) p; ``cosine``
  low + (high - low)(1 + cos(pi p)) / 2; ``exp`` low + (high - low) exp(-k p) (rate k, default 8).
- ``prophet_threshold(p)``: Prophet's phases, 7.5 below progress 0.33, 5.0 below 0.67, else 2.5.
"""

from __future__ import annotations

import math

from decodekit.errors import UserError

SCHEDULE_KINDS = ("linear", "cosine", "exp")


def llada_counts(n: int, steps: int) -> list[int]:
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    base, extra = divmod(n, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def dream_count(n_masked: int, step: int, steps: int, eps: float = 1e-3) -> int:
    if step >= steps - 1:
        return n_masked
    t = 1 - (1 - eps) * step / steps
    s = 1 - (1 - eps) * (step + 1) / steps
    return int(n_masked * (1 - s / t))


def margin_threshold(kind: str, p: float, high: float = 7.5, low: float = 2.5, k: float = 8.0) -> float:
    p = min(max(p, 0.0), 1.0)
    if kind == "linear":
        return high + (low - high) * p
    if kind == "cosine":
        return low + (high - low) * (1 + math.cos(math.pi * p)) / 2
    if kind == "exp":
        return low + (high - low) * math.exp(-k * p)
    raise UserError(f"unknown SchED schedule {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")


def prophet_threshold(p: float) -> float:
    return 7.5 if p < 0.33 else 5.0 if p < 0.67 else 2.5
