"""Suite-wide test settings and the BIDS fixture-dataset builders (tests/fixtures_bids.py).

Area fixtures live in tests/<area>/conftest.py.
"""

import os
from pathlib import Path

import pytest

# Keep the 2-core CI machine responsive and results deterministic.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def fx():
    """The fixtures_bids module."""
    import fixtures_bids

    return fixtures_bids


@pytest.fixture
def make_ds(tmp_path, fx):
    """``make_ds("full_pair")`` writes that fixture dataset under tmp_path and returns its root."""

    def _make(name: str) -> Path:
        return fx.BUILDERS[name](tmp_path / name)

    return _make


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A random-weight tumsyn-small checkpoint: for wiring tests, never for quality or the demo."""
    import torch

    from tumsyn_bids.models.checkpoint import save_native
    from tumsyn_bids.models.loading import make_random_bundle

    torch.set_num_threads(1)
    bundle = make_random_bundle("tumsyn-small", seed=0)
    path = tmp_path_factory.mktemp("weights") / "random-small.pt"
    save_native(path, bundle.spec, bundle.text_encoder, bundle.net)
    return path
