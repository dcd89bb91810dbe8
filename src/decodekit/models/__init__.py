"""Runtime: loading models (catalog, GGUF conversion cache, hub ids, local directories) and their forward pass."""

from decodekit.models.catalog import CATALOG, DEFAULT_MODEL
from decodekit.models.loaded import LoadedModel
from decodekit.models.loading import load_model

__all__ = ["CATALOG", "DEFAULT_MODEL", "LoadedModel", "load_model"]
