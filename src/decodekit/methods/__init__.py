"""Decoding methods: the registry (name -> drafter recipe) and the modules that register into it.

Each module below registers the methods of one family; importing this package registers them all.
"""

from decodekit.methods.registry import METHODS, Method, get_method, register

from decodekit.methods import baseline  # noqa: E402,F401  (ar)
from decodekit.methods import retrieval  # noqa: E402,F401  (pld, sam)
from decodekit.methods import model_drafting  # noqa: E402,F401  (draft, layerskip)
from decodekit.methods import self_tuning  # noqa: E402,F401  (recycle, lookahead, jacobi, ngram, hybrid, auto)

__all__ = ["METHODS", "Method", "get_method", "register"]
