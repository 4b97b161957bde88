"""Atomic writes: complete files or nothing, and clear errors."""

from pathlib import Path

import pytest

from tumsyn_bids.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from tumsyn_bids.errors import ExitCode, OutputError


def test_text_and_bytes_replace_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failing_writer_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "img.nii.gz"
    target.write_text("old")
    seen = []

    def writer(tmp: Path) -> None:
        seen.append(tmp.name)
        tmp.write_text("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, writer)
    assert seen[0].endswith(".nii.gz") and seen[0].startswith(".img.nii.gz.")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii.gz"]


def test_unwritable_directory_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as info:
        atomic_write_text(blocker / "child.json", "{}")
    assert info.value.exit_code == ExitCode.CANT_CREATE
    assert "child.json" in str(info.value)
