"""What a decoding method brings to the speculative loop: a drafter (or none, for plain decoding) and the
logits processors it adds to each request's chain (none for the lossless methods, whose output is plain
decoding's; a contrastive or constrained method adds its own), and, for a method whose loop is not the
speculative step (quality/: AdaDec's rollouts, EAD's model switching, DoLa's layer-exit forward), a
`make_loop` that gives each request its own step: a callable `loop(state) -> Committed` that pushes what it
commits through the state's output committer like the step does, and may have `quality() -> dict[str, float]`
(counters copied into the result)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from decodekit.drafting.base import Drafter
from decodekit.sampling import LogitsProcessor


def _no_processors() -> list[LogitsProcessor]:
    return []


@dataclass
class Decoder:
    drafter: Drafter | None = None
    make_processors: Callable[[], list[LogitsProcessor]] = field(default=_no_processors)  # fresh ones per request
    make_loop: Callable[[], Any] | None = None  # a fresh step of the method's own per request (None: step.py's)
