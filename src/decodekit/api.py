"""The Python facade: `decodekit.generate(prompt, ...)`, and `Session` for what lives across calls.

A session owns loaded models and what drafters learn; pass one (`session=`) to reuse them across calls, or a
`LoadedModel`. Without either, a call loads its model by name for itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from decodekit.constrain import Grammar
from decodekit.core import DecodeRequest
from decodekit.core.request import check_request
from decodekit.defaults import NUM_DRAFT
from decodekit.methods import build_decoder, get_method
from decodekit.models import DEFAULT_MODEL, LoadedModel
from decodekit.sampling import LogitsProcessor, SamplingConfig
from decodekit.session import Session
from decodekit.speculative.decoding import Decoding


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
    processors: Sequence[LogitsProcessor] = (),
    constraint: Grammar | None = None,
    stream: bool = False,
    dtype: str = "auto",
    session: Session | None = None,
    backend: str = "auto",
    **options: Any,
):
    """Generate from `prompt` (text, or token ids sent as they are).

    Returns a GenerationResult, or with `stream=True` a Decoding: iterate it for text deltas, then read
    its `.result`. `chat` applies the model's chat template (default: when it has one). `processors` join the
    request's logits-processor chain (sampling/processors.py); `constraint` (a constrain.Grammar: JSON schema,
    any JSON, regex, Lark) joins it last, and the result's `complete` says whether the grammar accepted the
    output. Method options (e.g. `draft_model`, `corpus`)
    go to the method; every option and parameter is checked before a model loads. `backend`: auto, lean,
    transformers or llamacpp (models/loading.py).
    """
    get_method(method, options)
    if constraint is not None:
        processors = [*processors, constraint]
    sampling = sampling or SamplingConfig()
    check_request(max_new_tokens, sampling, stop, num_draft)
    session = session or Session()
    loaded = session.model(model, dtype=dtype, backend=backend)
    ids = list(prompt) if isinstance(prompt, list) else loaded.encode(prompt, chat)
    request = DecodeRequest(ids, max_new_tokens, sampling, stop, num_draft, processors)
    decoding = Decoding(loaded, request, build_decoder(method, loaded, session, options), method)
    return decoding if stream else decoding.run()
