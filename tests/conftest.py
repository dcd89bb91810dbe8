import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def smollm2_f32():
    """The embedded default in float32 (the converted-model cache makes this fast after the first run)."""
    from decodekit.models import load_model

    return load_model("smollm2-135m", dtype="float32")


@pytest.fixture(scope="session")
def smollm2_bf16():
    from decodekit.models import load_model

    return load_model("smollm2-135m", dtype="bfloat16")


@pytest.fixture(scope="session")
def smollm2_q4():
    """The embedded default with its GGUF's own 4-bit layer weights and bfloat16 activations."""
    from decodekit.models import load_model

    return load_model("smollm2-135m", dtype="q4")


@pytest.fixture(scope="session")
def gemma_f32():
    """The embedded Gemma 3 270M in float32, loaded once for every test that needs it."""
    from decodekit.models import load_model

    return load_model("gemma3-270m", dtype="float32")


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Unit tests run tiny models, whose tensors are too small for a thread pool: one thread avoids the pool's
    synchronisation (which dominates them, above all on a loaded machine). Integration tests keep torch's
    default."""
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
