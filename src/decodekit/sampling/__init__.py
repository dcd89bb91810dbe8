"""Sampling: validated parameters, the warpers that turn logits into the target distribution, and
uncertainty signals (entropy, margin)."""

from decodekit.sampling.config import SamplingConfig
from decodekit.sampling.signals import entropy_and_margin
from decodekit.sampling.warpers import apply_repetition_penalty, target_probs, warp

__all__ = ["SamplingConfig", "apply_repetition_penalty", "entropy_and_margin", "target_probs", "warp"]
