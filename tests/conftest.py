import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import os

# Tests must behave the same on 1 or 2 cores and never oversubscribe the CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Folder of a tiny exported model (built once per test session)."""
    pytest.importorskip("torch")
    from model_fixture import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
