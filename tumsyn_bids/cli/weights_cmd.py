"""``tumsyn weights``: list the models, where their weights are searched, and their sha256.

``--fetch-official DIR`` downloads the published TUMSyn files (Zenodo record 13119176) for users
with network access and checks them against the record's checksums. Nothing else in the
package ever downloads. torch is imported only by ``--check``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from tumsyn_bids.errors import DataError, OutputError, TumsynError, UsageError

ZENODO_RECORD = "13119176"
ZENODO_API = f"https://zenodo.org/api/records/{ZENODO_RECORD}"


def describe_locations(weights: str | None = None) -> list[dict[str, Any]]:
    """One row per model and search location: source, location, exists, sha256 of each file."""
    from tumsyn_bids.models.configs import CONFIGS
    from tumsyn_bids.models.locations import sha256_file, split_location, weights_candidates

    rows = []
    for name in sorted(CONFIGS):
        for source, location in weights_candidates(name, weights):
            files = split_location(location)
            if len(files) == 1 and files[0].is_dir():
                files = sorted(p for p in files[0].iterdir() if p.suffix in (".pt", ".pth") and p.is_file())
            found = [p for p in files if p.is_file()]
            rows.append(
                {
                    "model": name,
                    "source": source,
                    "location": location,
                    "exists": bool(found) and len(found) == len(files),
                    "sha256": {str(p): sha256_file(p) for p in found},
                }
            )
    return rows


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def download_verified(url: str, dest: Path, checksum: str | None = None, size: int | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically; check size and an ``md5:``/``sha256:`` checksum."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            while block := resp.read(1 << 20):
                out.write(block)
        if size is not None and tmp.stat().st_size != size:
            raise DataError(f"download has {tmp.stat().st_size} bytes, expected {size}", path=dest)
        if checksum:
            from tumsyn_bids.models.locations import sha256_file

            algo, _, expected = checksum.partition(":")
            if algo not in ("md5", "sha256"):
                raise DataError(f"unknown checksum type {algo!r}", path=dest)
            got = _md5(tmp) if algo == "md5" else sha256_file(tmp)
            if got != expected.lower():
                raise DataError(f"{algo} checksum mismatch: got {got}, expected {expected}", path=dest)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def fetch_official(directory: Path, api_url: str = ZENODO_API) -> list[Path]:
    """Download every file of the published record into ``directory``, verified."""
    with urllib.request.urlopen(api_url, timeout=60) as resp:  # noqa: S310
        record = json.load(resp)
    paths = []
    for entry in record.get("files", []):
        name = entry.get("key") or entry.get("filename")
        url = (entry.get("links") or {}).get("self") or (entry.get("links") or {}).get("download")
        if not name or not url:
            raise DataError("record lists a file without a name or link", path=api_url)
        paths.append(download_verified(url, directory / Path(name).name, entry.get("checksum"), entry.get("size")))
    if not paths:
        raise DataError("record lists no files", path=api_url)
    return paths


def weights(
    weights_path: Annotated[
        str | None, typer.Option("--weights", help="Also show this weights file (or folder / PATH1:PATH2 pair).")
    ] = None,
    fetch_official_dir: Annotated[
        Path | None,
        typer.Option("--fetch-official", help="Download the published TUMSyn weights (needs network) into DIR."),
    ] = None,
    convert_official_out: Annotated[
        Path | None,
        typer.Option("--convert-official", help="Write the published pair given by --weights as one native file OUT."),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Load each model that has weights and report it.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False,
) -> None:
    """List the models, where their weights are searched (in order) and the sha256 of what is found."""
    try:
        if fetch_official_dir is not None:
            try:
                for path in fetch_official(fetch_official_dir):
                    from tumsyn_bids.models.locations import sha256_file

                    typer.echo(f"{path}  sha256 {sha256_file(path)}")
            except OSError as exc:
                raise OutputError(f"download failed: {exc}", path=fetch_official_dir) from None
            typer.echo(f"use: --model tumsyn-official --weights {fetch_official_dir}")
            return
        if convert_official_out is not None:
            if not weights_path:
                raise UsageError("--convert-official needs --weights FOLDER (or SYNTH.pth:STAGE1.pth)")
            from tumsyn_bids.models.loading import convert_official

            digest = convert_official(weights_path, convert_official_out)
            typer.echo(f"{convert_official_out}  sha256 {digest}")
            typer.echo(f"use: --model tumsyn-official --weights {convert_official_out}")
            return
        rows = describe_locations(weights_path)
        if check:
            _add_checks(rows)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            state = "found" if row["exists"] else "absent"
            typer.echo(f"{row['model']:<16} {row['source']:<15} {state:<6} {row['location']}")
            for path, digest in row["sha256"].items():
                if path != row["location"]:
                    typer.echo(f"{'':<39}{path}")
                typer.echo(f"{'':<39}sha256 {digest}")
            if "check" in row:
                typer.echo(f"{'':<39}{row['check']}")
    except TumsynError as exc:
        typer.echo(f"tumsyn: error: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code)) from None


def _add_checks(rows: list[dict[str, Any]]) -> None:
    from tumsyn_bids.models.loading import load_model

    for row in rows:
        if not row["exists"]:
            continue
        try:
            bundle = load_model(row["model"], weights=row["location"])
            row["check"] = (f"ok: {bundle.name}, {bundle.parameter_count:,} synthesis parameters, "
                            f"axis order {bundle.axis_order}")
        except TumsynError as exc:
            row["check"] = f"unusable: {exc}"
