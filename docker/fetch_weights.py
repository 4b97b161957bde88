"""Fetch the published TUMSyn weights at ``docker build`` time and verify their checksums.

The Zenodo record API (``--record``, default record 13119176) lists each file with its link and
checksum (``md5:...``). Every file is downloaded to a temporary name in ``--dest``, checked against
the record's checksum and, when given, a sha256 pin (``--pins "name=sha256 ..."``), then moved into
place atomically. Any mismatch fails the build and leaves no partial file. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

DEFAULT_RECORD = "https://zenodo.org/api/records/13119176"
_CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded file does not match its published or pinned checksum."""


def parse_pins(text: str) -> dict[str, str]:
    """``"a.pth=ab12.. b.pth=cd34.."`` -> ``{"a.pth": "ab12..", ...}`` (lower-case hex)."""
    pins: dict[str, str] = {}
    for item in text.split():
        name, sep, digest = item.partition("=")
        if not sep or not name or len(digest) != 64:
            raise ValueError(f"bad sha256 pin {item!r}: expected name=<64 hex digits>")
        pins[name] = digest.lower()
    return pins


def record_files(record_url: str) -> list[dict[str, str]]:
    """Files of a Zenodo record as ``[{"name", "url", "checksum"}]`` (checksum ``algo:hex``)."""
    with urllib.request.urlopen(record_url, timeout=60) as response:  # noqa: S310 (build-time fetch)
        record = json.load(response)
    files = []
    for entry in record.get("files", []):
        links = entry.get("links", {})
        files.append(
            {
                "name": entry["key"],
                "url": links.get("content") or links.get("self"),
                "checksum": entry.get("checksum", ""),
            }
        )
    if not files:
        raise RuntimeError(f"{record_url}: record lists no files")
    return files


def download(url: str, dest: Path, checksum: str, sha256: str | None) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``checksum`` (``algo:hex``) and ``sha256``."""
    algo, _, expected = checksum.partition(":")
    hashers = {"sha256": hashlib.sha256()}
    if expected:
        hashers.setdefault(algo, hashlib.new(algo))
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                for hasher in hashers.values():
                    hasher.update(chunk)
        if expected and hashers[algo].hexdigest() != expected.lower():
            raise ChecksumError(f"{dest.name}: {algo} {hashers[algo].hexdigest()} != published {expected}")
        if sha256 and hashers["sha256"].hexdigest() != sha256:
            raise ChecksumError(f"{dest.name}: sha256 {hashers['sha256'].hexdigest()} != pinned {sha256}")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def fetch(record_url: str, dest: Path, pins: dict[str, str]) -> list[Path]:
    """Download every file of the record into ``dest``; returns the paths written."""
    files = record_files(record_url)
    unknown = sorted(set(pins) - {f["name"] for f in files})
    if unknown:
        raise RuntimeError(f"{record_url}: pinned file(s) not in the record: {', '.join(unknown)}")
    written = []
    for entry in files:
        path = download(entry["url"], dest / entry["name"], entry["checksum"], pins.get(entry["name"]))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"fetch_weights: {path} sha256={digest}")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enabled", choices=("0", "1"), default="1", help="0: only create --dest")
    parser.add_argument("--record", default=DEFAULT_RECORD, help="Zenodo record API URL")
    parser.add_argument("--dest", type=Path, required=True, help="folder for the weight files")
    parser.add_argument("--pins", default="", help='optional "name=sha256 ..." pins')
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    if args.enabled == "0":
        return 0
    try:
        fetch(args.record, args.dest, parse_pins(args.pins))
    except (ChecksumError, RuntimeError, ValueError, OSError) as exc:
        print(f"fetch_weights: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
