"""Shared test helpers: quiet TensorFlow, the path of `../shared/fixtures`, skipping without it."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture
def fixtures_dir():
    """`../shared/fixtures`, or a skip naming the missing folder."""
    if not FIXTURES.is_dir():
        pytest.skip(f"fixtures folder {FIXTURES} is absent (it lies beside the repository in CI)")
    return FIXTURES


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state (Python, NumPy and the Keras backend)."""
    import keras
    keras.utils.set_random_seed(0)
