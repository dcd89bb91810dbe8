"""The Python entry point: `decodekit.generate(prompt, ...)`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from decodekit.defaults import NUM_DRAFT
from decodekit.engine import DecodeRequest, Decoding
from decodekit.methods import get_method
from decodekit.models import DEFAULT_MODEL, LoadedModel, load_model
from decodekit.sampling import SamplingConfig

_loaded: dict[tuple[str, str, str], LoadedModel] = {}


def get_model(model: str | LoadedModel, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """A LoadedModel as given, or loaded once per process by name, dtype and device."""
    if isinstance(model, LoadedModel):
        return model
    key = (model, dtype, device)
    if key not in _loaded:
        _loaded[key] = load_model(model, dtype=dtype, device=device)
    return _loaded[key]


def generate(
    prompt: str | list[int],
    model: str | LoadedModel = DEFAULT_MODEL,
    *,
    method: str = "ar",
    max_new_tokens: int = 256,
    sampling: SamplingConfig | None = None,
    stop: Sequence[str] = (),
    chat: bool | None = None,
    num_draft: int = NUM_DRAFT,
    stream: bool = False,
    dtype: str = "auto",
    **options: Any,
):
    """Generate from `prompt` (text, or token ids sent as they are).

    Returns a GenerationResult, or with `stream=True` a Decoding: iterate it for text deltas, then read
    its `.result`. `chat` applies the model's chat template (default: when it has one). Method options
    (e.g. `draft_model`, `corpus`) are passed through to the method's drafter.
    """
    recipe = get_method(method, options)
    sampling = sampling or SamplingConfig()
    request_check = DecodeRequest([0], max_new_tokens, sampling, stop, num_draft)  # validates before loading
    loaded = get_model(model, dtype=dtype)
    ids = list(prompt) if isinstance(prompt, list) else loaded.encode(prompt, chat)
    request = DecodeRequest(ids, request_check.max_new_tokens, sampling, stop, num_draft)
    decoding = Decoding(loaded, request, recipe.make_drafter(loaded, options), method)
    return decoding if stream else decoding.run()
