"""The registry of decoding methods: a name -> how to build its decoder for a model, with its options.

Plain autoregressive decoding (`ar`) is the loop with no drafter; every other method plugs a drafter (or
processors) into the same loop, so a measured speedup is the method's and not that of a different code path.
The registry is a read-only mapping assembled from each family's tuple of methods.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from decodekit.errors import UserError
from decodekit.methods import baseline, model_drafting, quality, retrieval, self_tuning
from decodekit.methods.method import Build, Method
from decodekit.models.loaded import LoadedModel
from decodekit.session import Session
from decodekit.speculative.decoder import Decoder

FAMILIES = (baseline.METHODS, retrieval.METHODS, model_drafting.METHODS, self_tuning.METHODS, quality.METHODS)
METHODS = MappingProxyType({method.name: method for family in FAMILIES for method in family})


def get_method(name: str, options: dict[str, Any] | None = None) -> Method:
    """The method called `name`, after checking that it takes every key of `options` and their values."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    method = METHODS[name]
    unknown = sorted(set(options or ()) - set(method.options))
    if unknown:
        takes = ", ".join(method.options) or "no options"
        raise UserError(f"method {name!r} does not take {', '.join(unknown)} (it takes {takes})")
    if method.check is not None:
        method.check(options or {})
    return method


def build_decoder(name: str, model: LoadedModel, session: Session, options: dict[str, Any] | None = None,
                  scope: str | None = None) -> Decoder:
    """The decoder of method `name` for `model`; what its drafters learn is kept in `session` under `scope`."""
    options = dict(options or {})
    method = get_method(name, options)

    def load(other: str) -> LoadedModel:
        if model.backend.name == "llamacpp":  # a draft model on the target's backend
            return session.model(other, backend="llamacpp")
        return session.model(other, dtype=model.precision, device=str(model.device))

    build = Build(model, session.store(scope), load,
                  lambda other, other_options: build_decoder(other, model, session, other_options, scope))
    return method.make(build, options)
