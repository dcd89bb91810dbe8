"""Sampling: validated parameters, the processor chain that turns logits into the target distribution
(repetition penalty, request processors, warpers), and uncertainty signals (entropy, varentropy, margin)."""

from decodekit.sampling.config import SamplingConfig
from decodekit.sampling.processors import LogitsProcessor, Processor, RepetitionPenalty, Warpers, for_model
from decodekit.sampling.sampler import Sampler
from decodekit.sampling.signals import entropy_and_margin, uncertainty, varentropy
from decodekit.sampling.warpers import warp

__all__ = ["LogitsProcessor", "Processor", "RepetitionPenalty", "Sampler", "SamplingConfig", "Warpers",
           "entropy_and_margin", "for_model", "uncertainty", "varentropy", "warp"]
