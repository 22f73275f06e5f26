"""Shared test settings: float64 references, a fixed seed per test, the shared data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _restore_threads():
    """Each test starts with the session's torch thread count: a bench job run in-process sets its
    own (as its worker process would), and float rounding, hence bitwise resume tests, depends on it."""
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor tests: a thread pool's overhead dominates them
    (100× on a busy 2-core machine). Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def data_dir() -> Path:
    """The real datasets (``../shared/data`` beside the clone, or ``$HIPPOS_DATA``)."""
    path = Path(os.environ.get("HIPPOS_DATA", SHARED_DATA))
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path
