"""decodekit: training-free faster and better decoding for language models, measured honestly."""

from decodekit.api import generate
from decodekit.constrain import Grammar
from decodekit.errors import UserError
from decodekit.methods import METHODS
from decodekit.models import CATALOG, LoadedModel, load_model
from decodekit.sampling import LogitsProcessor, Processor, SamplingConfig
from decodekit.session import Session
from decodekit.trace import GenerationResult, StepRecord

__all__ = [
    "CATALOG", "METHODS", "GenerationResult", "Grammar", "LoadedModel", "LogitsProcessor", "Processor", "SamplingConfig",
    "Session", "StepRecord", "UserError", "generate", "load_model",
]
__version__ = "0.1.0"
