"""What a decoding method brings to the speculative loop: a drafter (or none, for plain decoding) and the
logits processors it adds to each request's chain (none for the lossless methods, whose output is plain
decoding's; a contrastive or constrained method adds its own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from decodekit.drafting.base import Drafter
from decodekit.sampling import LogitsProcessor


def _no_processors() -> list[LogitsProcessor]:
    return []


@dataclass
class Decoder:
    drafter: Drafter | None = None
    make_processors: Callable[[], list[LogitsProcessor]] = field(default=_no_processors)  # fresh ones per request
