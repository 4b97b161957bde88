"""Fixtures of the robustness corpus (helpers in helpers.py, loaded by file path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def load_helpers():
    """tests/robustness/helpers.py as module ``tumsyn_robustness_helpers`` (loaded once)."""
    name = "tumsyn_robustness_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("helpers.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


H = load_helpers()


@pytest.fixture
def robust_run(tmp_path):
    """``robust_run(bids, *args)``: run the CLI on ``bids`` and check BIDS_DIR is unchanged and
    OUTPUT_DIR (tmp_path/out) holds no partial file. Returns (Result, out_dir, work_dir)."""

    def _run(bids: Path, *args, out: Path | None = None, timeout: float = 300, env: dict | None = None,
             level: str = "participant"):
        out = out or tmp_path / "out"
        work = tmp_path / "work"
        before = H.tree_digest(bids)
        result = H.run_cli(bids, out, level, "-w", work, *args, cwd=tmp_path, timeout=timeout, env=env)
        assert H.tree_digest(bids) == before, "BIDS_DIR changed"
        assert H.partial_files(out) == [], H.partial_files(out)
        return result, out, work

    return _run
