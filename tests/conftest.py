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


@pytest.fixture(scope="session")
def tiny_exported(tmp_path_factory):
    """A copy of the committed tiny exported model (tests/data/tiny_model, made by
    tests/data/make_tiny_model.py): the runtime's tests need no torch and no training."""
    import shutil

    folder = tmp_path_factory.mktemp("tiny_exported") / "tiny"
    shutil.copytree(Path(__file__).parent / "data" / "tiny_model", folder)
    return folder
