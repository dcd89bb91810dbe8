"""Sampling parameters, validated when they are made so that a bad value fails before any model loads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from decodekit.errors import ParameterError, UserError


def _check(ok: bool, parameter: str, message: str) -> None:
    if not ok:
        raise ParameterError(parameter, message)


@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 is greedy decoding; every other field only matters when sampling, except the
    repetition penalty, which greedy decoding applies too. Defaults switch each warper off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        finite = all(
            math.isfinite(v)
            for v in (self.temperature, self.top_p, self.min_p, self.typical_p, self.epsilon_cutoff,
                      self.eta_cutoff, self.repetition_penalty)
        )
        if not finite:
            raise UserError("sampling parameters must be finite numbers")
        _check(self.temperature >= 0, "temperature", f"must be >= 0 (0 = greedy), got {self.temperature}")
        _check(self.top_k >= 0, "top_k", f"must be >= 0 (0 = off), got {self.top_k}")
        _check(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        _check(0 <= self.min_p <= 1, "min_p", f"must be in [0, 1], got {self.min_p}")
        _check(0 < self.typical_p <= 1, "typical_p", f"must be in (0, 1], got {self.typical_p}")
        _check(0 <= self.epsilon_cutoff < 1, "epsilon_cutoff", f"must be in [0, 1), got {self.epsilon_cutoff}")
        _check(0 <= self.eta_cutoff < 1, "eta_cutoff", f"must be in [0, 1), got {self.eta_cutoff}")
        _check(self.repetition_penalty > 0, "repetition_penalty", f"must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
