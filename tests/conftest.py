"""Suite-wide test settings and the BIDS fixture-dataset builders (tests/fixtures_bids.py).

Area fixtures live in tests/<area>/conftest.py.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# Keep the 2-core CI machine responsive and results deterministic.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
os.environ.setdefault("MPLBACKEND", "Agg")


def load_fixtures():
    """Import tests/fixtures_bids.py whatever pytest's import mode (cached in sys.modules)."""
    name = "tumsyn_tests_fixtures_bids"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "fixtures_bids.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def fx():
    """The fixtures_bids module."""
    return load_fixtures()


@pytest.fixture
def make_ds(tmp_path, fx):
    """``make_ds("full_pair")`` writes that fixture dataset under tmp_path and returns its root."""

    def _make(name: str) -> Path:
        return fx.BUILDERS[name](tmp_path / name)

    return _make
