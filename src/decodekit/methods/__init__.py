"""Decoding methods: the registry (name -> decoder recipe) and the families it is assembled from
(baseline: ar; retrieval: pld, sam; model_drafting: draft, draft-tree, layerskip; self_tuning: recycle,
lookahead, jacobi, ngram, hybrid, auto; quality: contrastive, uscd, dola, adadec, ead)."""

from decodekit.methods.method import Build, Method
from decodekit.methods.registry import METHODS, build_decoder, get_method

__all__ = ["METHODS", "Build", "Method", "build_decoder", "get_method"]
