"""CLI test fixtures: in-process runs of tumsyn-bids with the built-in validator."""

from __future__ import annotations

import pytest


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
