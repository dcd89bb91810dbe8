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
