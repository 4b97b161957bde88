"""Fixtures: the tiny BIDS dataset builders of tests/fixtures_bids.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def load_fixtures():
    """Import tests/fixtures_bids.py whatever pytest's import mode (cached in sys.modules)."""
    name = "tumsyn_tests_fixtures_bids"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "fixtures_bids.py")
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


@pytest.fixture(autouse=True)
def _builtin_validator(monkeypatch):
    """CLI tests use the built-in validation (the official validator has its own test)."""
    monkeypatch.setenv("TUMSYN_BIDS_VALIDATOR", "builtin")


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """``cli(*args) -> (exit code, stdout, stderr)``, run in-process from tmp_path."""
    from tumsyn_bids.cli.main import run

    monkeypatch.chdir(tmp_path)

    def _run(*args):
        code = run([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
