"""``tumsyn weights``: listing, sha256, --check, verified downloads (file:// URLs, no network)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from tumsyn_bids.cli.weights_cmd import download_verified, fetch_official, weights
from tumsyn_bids.errors import DataError
from tumsyn_bids.models.checkpoint import save_native
from tumsyn_bids.models.loading import ENV_WEIGHTS, make_random_bundle
from tumsyn_bids.models.locations import sha256_file


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(weights)
    return app


def test_lists_models_locations_and_sha256(tmp_path, monkeypatch):
    bundle = make_random_bundle()
    path = tmp_path / "mine.pt"
    digest = save_native(path, bundle.spec, bundle.text_encoder, bundle.net)
    monkeypatch.setenv(ENV_WEIGHTS, str(path))
    result = CliRunner().invoke(_app(), ["--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["model"] for r in rows} == {"tumsyn-small", "lccd-small", "tumsyn-official"}
    env_rows = [r for r in rows if r["source"] == ENV_WEIGHTS]
    assert env_rows and all(r["exists"] and r["sha256"] == {str(path): digest} for r in env_rows)
    bundled = [r for r in rows if r["source"] == "bundled"]
    assert all(r["location"].endswith(f"data/models/{r['model']}.pt") for r in bundled)

    result = CliRunner().invoke(_app(), ["--check", "--weights", str(tmp_path / "absent.pt")])
    assert result.exit_code == 0, result.output
    assert f"sha256 {digest}" in result.output
    assert "ok: tumsyn-small" in result.output and "absent" in result.output


def test_convert_official_needs_weights(tmp_path):
    result = CliRunner().invoke(_app(), ["--convert-official", str(tmp_path / "x.pt")])
    assert result.exit_code == 64 and "needs --weights" in result.output


def test_verified_download_from_file_url(tmp_path):
    src = tmp_path / "published.pth"
    src.write_bytes(b"weights" * 1000)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = download_verified(src.as_uri(), tmp_path / "out" / "a.pth", f"md5:{md5}", src.stat().st_size)
    assert sha256_file(dest) == sha256_file(src)
    with pytest.raises(DataError, match="md5 checksum mismatch"):
        download_verified(src.as_uri(), tmp_path / "out" / "b.pth", "md5:" + "0" * 32)
    with pytest.raises(DataError, match="bytes, expected 3"):
        download_verified(src.as_uri(), tmp_path / "out" / "c.pth", None, 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.pth"]  # no partial files left

    record = tmp_path / "record.json"
    record.write_text(json.dumps({"files": [{"key": "published.pth", "size": src.stat().st_size,
                                             "checksum": f"md5:{md5}", "links": {"self": src.as_uri()}}]}))
    got = fetch_official(tmp_path / "zen", api_url=record.as_uri())
    assert [p.name for p in got] == ["published.pth"] and got[0].read_bytes() == src.read_bytes()


def test_cli_import_stays_light():
    code = ("import sys, tumsyn_bids.cli.weights_cmd; "
            "print(sorted(m for m in ('torch', 'nipype', 'ants') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
