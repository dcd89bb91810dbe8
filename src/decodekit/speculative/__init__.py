"""Speculative decoding for autoregressive LMs: the step (propose, one forward, verify, commit), the draft tree's
masks and paths, and the acceptance rules."""
