"""Where drafters keep what outlives a request: the protocol a session implements (session.py).

`learned(key, make)`: state that learns from the requests served (Token Recycling's adjacency matrix, the
online n-gram counts, the `auto` bandit's statistics), kept per learning scope, so that methods a benchmark
runs side by side learn apart and a repeat can start again from a snapshot. `kept(key, make)`: things that
are costly to make and are the same for everyone (a measured cost curve, a corpus's automaton, a matrix file's
binding). Both return the object made by `make()` the first time a key is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

State = TypeVar("State")


class StateStore(Protocol):
    def learned(self, key: tuple, make: Callable[[], State]) -> State: ...

    def kept(self, key: tuple, make: Callable[[], State]) -> State: ...
