"""What a decoding method is: a name, what it does, the options it takes and how it builds a decoder.

A method's `make(build, options)` returns the `Decoder` one request runs with (speculative/decoder.py): a
drafter, processors, or both. `check(options)` runs before any model loads and raises a UserError for a bad
value. `Build` carries what a factory may need besides its options: the model, the session's store for what
its drafters keep (under the method's learning scope), and `decoder(name, options)` to build another method's
decoder (the combinations: `hybrid`, `auto`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from decodekit.drafting.base import Drafter
from decodekit.drafting.state_store import StateStore
from decodekit.errors import UserError
from decodekit.models.loaded import LoadedModel
from decodekit.speculative.decoder import Decoder

OptionsCheck = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Build:
    model: LoadedModel
    store: StateStore
    load: Callable[[str], LoadedModel]  # another model (a draft model) with the target's dtype and device
    decoder: Callable[[str, dict[str, Any]], Decoder]  # another method's decoder, built the same way


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    make: Callable[[Build, dict[str, Any]], Decoder]
    options: tuple[str, ...] = ()  # the keys of `options` it reads (e.g. "corpus", "draft_model")
    check: OptionsCheck | None = None  # cheap checks of option values, run before any model loads
    lossless: bool = True  # greedy output equals `ar`'s (False for the quality methods, which change it)


def load_second_model(build: Build, what: str, name: str) -> LoadedModel:
    """Another model than the target (a draft model, an amateur), loaded with the target's dtype and device; a
    failure to load is a one-line UserError naming `what`."""
    try:
        return build.load(name)
    except (ValueError, OSError) as error:  # UserError is a ValueError; transformers raises either
        raise UserError(f"cannot load {what} {name!r}: {str(error).splitlines()[0]}") from error


def drafting(make_drafter: Callable[[Build, dict[str, Any]], Drafter | None]
             ) -> Callable[[Build, dict[str, Any]], Decoder]:
    """A method factory from a drafter factory: the decoder is that drafter, with no processors."""

    def make(build: Build, options: dict[str, Any]) -> Decoder:
        return Decoder(drafter=make_drafter(build, options))

    return make
