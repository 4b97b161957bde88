"""The build-time fetchers in docker/: weights checksums (over file:// URLs) and offline templates."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docker_{name}", REPO / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch_weights = _load("fetch_weights")


def _record(tmp_path: Path, payloads: dict[str, bytes], md5_override: dict[str, str] | None = None) -> str:
    """A Zenodo-like record JSON on disk whose links are file:// URLs; returns its URL."""
    files = []
    for name, data in payloads.items():
        src = tmp_path / "zenodo" / name
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        md5 = (md5_override or {}).get(name, hashlib.md5(data).hexdigest())
        files.append({"key": name, "checksum": f"md5:{md5}", "links": {"self": src.as_uri()}})
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"id": 13119176, "files": files}))
    return record.as_uri()


PAYLOADS = {"synthesis.pth": os.urandom(3000), "text_encoder.pth": os.urandom(1500)}


def test_weights_are_downloaded_and_verified(tmp_path: Path) -> None:
    url = _record(tmp_path, PAYLOADS)
    pin = hashlib.sha256(PAYLOADS["synthesis.pth"]).hexdigest()
    dest = tmp_path / "weights"
    rc = fetch_weights.main(["--record", url, "--dest", str(dest), "--pins", f"synthesis.pth={pin}"])
    assert rc == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(PAYLOADS)
    for name, data in PAYLOADS.items():
        assert (dest / name).read_bytes() == data


def test_published_checksum_mismatch_fails_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    url = _record(tmp_path, PAYLOADS, md5_override={"text_encoder.pth": "0" * 32})
    dest = tmp_path / "weights"
    assert fetch_weights.main(["--record", url, "--dest", str(dest)]) == 1
    assert "text_encoder.pth: md5" in capsys.readouterr().err
    assert not (dest / "text_encoder.pth").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_sha256_pin_mismatch_fails(tmp_path: Path, capsys) -> None:
    url = _record(tmp_path, PAYLOADS)
    dest = tmp_path / "weights"
    assert fetch_weights.main(["--record", url, "--dest", str(dest), "--pins", f"synthesis.pth={'a' * 64}"]) == 1
    assert "pinned" in capsys.readouterr().err
    assert not (dest / "synthesis.pth").exists()


def test_pin_for_a_file_not_in_the_record_fails(tmp_path: Path, capsys) -> None:
    url = _record(tmp_path, PAYLOADS)
    assert fetch_weights.main(["--record", url, "--dest", str(tmp_path / "w"), "--pins", f"other.pth={'b' * 64}"]) == 1
    assert "other.pth" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["synthesis.pth", "synthesis.pth=abc", "=" + "c" * 64])
def test_bad_pins_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="bad sha256 pin"):
        fetch_weights.parse_pins(bad)


def test_disabled_weights_only_create_the_folder(tmp_path: Path) -> None:
    dest = tmp_path / "w"
    assert fetch_weights.main(["--enabled", "0", "--record", "file:///nonexistent", "--dest", str(dest)]) == 0
    assert dest.is_dir() and not list(dest.iterdir())


def test_offline_templates_unpack_the_skeleton_without_network(tmp_path: Path) -> None:
    home = tmp_path / "templateflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPLATEFLOW")}
    # An unroutable proxy: any attempt to reach the network fails instead of succeeding by chance.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, str(REPO / "docker" / "fetch_templates.py"), "--home", str(home), "--enabled", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "0 file(s)" in result.stderr
    assert (home / "tpl-MNI152NLin2009cAsym" / "template_description.json").is_file()
