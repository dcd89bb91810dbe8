"""decodekit: training-free faster and better decoding for language models, measured honestly."""

from decodekit.api import generate, get_model
from decodekit.errors import UserError
from decodekit.methods import METHODS
from decodekit.models import CATALOG, LoadedModel, load_model
from decodekit.sampling import SamplingConfig
from decodekit.trace import GenerationResult, StepRecord

__all__ = [
    "CATALOG", "METHODS", "GenerationResult", "LoadedModel", "SamplingConfig", "StepRecord", "UserError",
    "generate", "get_model", "load_model",
]
__version__ = "0.1.0"
