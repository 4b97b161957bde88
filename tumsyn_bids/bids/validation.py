"""Dataset validation before anything is indexed.

Two layers:

1. A cheap built-in check that always runs: ``dataset_description.json`` exists, is a JSON
   object with ``Name`` and ``BIDSVersion``, and every JSON sidecar of the selected participants'
   ``anat`` folders (and the dataset's top-level sidecars) parses.
2. The official validator, when the ``bids-validator-deno`` executable (pip package
   ``bids-validator-deno``) is on PATH or next to the running Python: it runs offline in about a
   second; its errors (not warnings) fail validation. Set ``TUMSYN_BIDS_VALIDATOR=builtin`` to
   use the built-in check only.

Failures raise :class:`BidsValidationError` (exit code 16) with one line naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from tumsyn_bids.errors import ExitCode, TumsynError

VALIDATOR_EXE = "bids-validator-deno"


class BidsValidationError(TumsynError):
    exit_code = ExitCode.BIDS_INVALID


def check_description(bids_dir: Path) -> dict:
    """Load and check ``dataset_description.json``; return its content."""
    path = Path(bids_dir) / "dataset_description.json"
    if not path.is_file():
        raise BidsValidationError("missing (required at the dataset root)", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise BidsValidationError(f"not valid JSON ({exc})", path=path) from exc
    except OSError as exc:
        raise BidsValidationError(f"cannot be read ({exc.strerror or exc})", path=path) from exc
    if not isinstance(data, dict):
        raise BidsValidationError("must hold a JSON object", path=path)
    missing = [key for key in ("Name", "BIDSVersion") if not data.get(key)]
    if missing:
        raise BidsValidationError(f"lacks required field(s) {', '.join(missing)}", path=path)
    return data


def _sidecars(bids_dir: Path, subjects: tuple[str, ...] | None) -> list[Path]:
    root = Path(bids_dir)
    files = [p for p in root.glob("*.json") if p.name != "dataset_description.json"]
    subject_dirs = [root / f"sub-{s}" for s in subjects] if subjects else sorted(root.glob("sub-*"))
    for sub in subject_dirs:
        files += sorted(sub.glob("*.json"))
        files += sorted(sub.glob("anat/*.json"))
        files += sorted(sub.glob("ses-*/anat/*.json"))
        files += sorted(sub.glob("ses-*/*.json"))
    return files


def check_sidecars(bids_dir: Path, subjects: tuple[str, ...] | None = None) -> None:
    """Every relevant JSON sidecar must parse."""
    for path in _sidecars(bids_dir, subjects):
        try:
            json.loads(path.read_text(encoding="utf-8-sig"))
        except ValueError as exc:
            raise BidsValidationError(f"sidecar is not valid JSON ({exc})", path=path) from exc
        except OSError as exc:
            raise BidsValidationError(f"sidecar cannot be read ({exc.strerror or exc})", path=path) from exc


def find_validator() -> str | None:
    """Path of the ``bids-validator-deno`` executable, or None."""
    if os.environ.get("TUMSYN_BIDS_VALIDATOR", "").lower() == "builtin":
        return None
    local = Path(sys.executable).parent / VALIDATOR_EXE
    if local.is_file():
        return str(local)
    return shutil.which(VALIDATOR_EXE)


def dangling_links(bids_dir: Path) -> list[Path]:
    """NIfTI files that are symlinks to absent content (a datalad/git-annex dataset not fully fetched)."""
    root = Path(bids_dir)
    found = []
    for pattern in ("sub-*/anat/*.nii*", "sub-*/ses-*/anat/*.nii*"):
        found += [p for p in root.glob(pattern) if p.is_symlink() and not p.exists()]
    return sorted(found)


def run_validator(bids_dir: Path, exe: str, timeout: float = 600.0, *, ignore_nifti_headers: bool = False) -> list[str]:
    """Run the official validator; return warnings' codes; raise on errors."""
    cmd = [exe, str(bids_dir), "--format", "json", "--ignoreWarnings"]
    if ignore_nifti_headers:
        cmd.append("--ignoreNiftiHeaders")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"bids-validator-deno could not run ({exc}); only the built-in check was done"]
    try:
        report = json.loads(proc.stdout)
        issues = report["issues"]["issues"]
    except (ValueError, KeyError, TypeError):
        if proc.returncode == 0:
            return []
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [f"bids-validator-deno failed without a report ({tail[0]}); only the built-in check was done"]
    errors = [i for i in issues if i.get("severity") == "error"]
    if errors:
        first = errors[0]
        where = first.get("location") or "/"
        more = f" (and {len(errors) - 1} more error(s); run bids-validator-deno for all)" if len(errors) > 1 else ""
        message = first.get("issueMessage") or report["issues"].get("codeMessages", {}).get(first.get("code"), "")
        message = " ".join(str(message).split())[:160]
        raise BidsValidationError(
            f"{first.get('code')}{': ' + message if message else ''}{more}",
            path=Path(bids_dir) / where.lstrip("/"),
        )
    return []


def validate_dataset(bids_dir: Path, subjects: tuple[str, ...] | None = None, *, external: bool = True) -> list[str]:
    """Validate ``bids_dir``; return warning lines; raise :class:`BidsValidationError` on failure."""
    check_description(bids_dir)
    check_sidecars(bids_dir, subjects)
    exe = find_validator() if external else None
    if exe is None:
        return []
    missing = dangling_links(bids_dir)
    if not missing:
        return run_validator(Path(bids_dir), exe)
    # A partly fetched datalad dataset: the validator cannot read absent headers. Validate the rest;
    # planning reports each selected image that is absent (naming it and `datalad get`).
    warning = (f"{missing[0]}: {len(missing)} image(s) are symlinks to absent content (datalad/git-annex: "
               "`datalad get` them); NIfTI headers were not validated")
    return [warning] + run_validator(Path(bids_dir), exe, ignore_nifti_headers=True)


# --------------------------------------------------------------------------------------------
# NIfTI integrity of one candidate source image (the planner passes over an image that fails)
# --------------------------------------------------------------------------------------------

# NIfTI datatype codes that are not one grey value per voxel.
_COLOUR_DATATYPES = {128: "RGB24", 2304: "RGBA32"}


def check_nifti(path: Path) -> tuple[tuple[int, ...], tuple[float, float, float]]:
    """Shape and voxel size of a NIfTI that can be synthesized from; DataError (one line) otherwise.

    Checks the header, the data type (grey values: no RGB, no complex), that every byte of the
    image data is present (counted exactly, also for a truncated .nii.gz), and that the image has
    signal (not all NaN, not constant). A dangling symlink (a git-annex/datalad file whose content
    was not fetched) is named as such.
    """
    import nibabel as nb
    import numpy as np

    from tumsyn_bids.errors import DataError

    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise DataError("dangling symlink: the file content is not present (a datalad/git-annex dataset? "
                        f"run `datalad get {path.name}` in its folder)", path=path)
    from tumsyn_bids.anat.conform import check_header_geometry, inspect_geometry

    check_header_geometry(path)  # an impossible qform without a sform: nibabel cannot place the voxels
    raw_zooms = _raw_voxel_sizes(path)
    if raw_zooms is not None and any(not (abs(z) > 0) for z in raw_zooms):  # nibabel would silently use 1 mm
        raise DataError(f"voxel sizes {raw_zooms} in the header are not positive", path=path)
    try:
        img = nb.load(str(path))
        header = img.header
        shape = tuple(int(n) for n in img.shape)
        zooms = tuple(float(z) for z in header.get_zooms()[:3])
        offset = int(getattr(img.dataobj, "offset", header.get_data_offset()))
        dtype = np.dtype(header.get_data_dtype())
        code = int(header["datatype"]) if "datatype" in header else 0
    except Exception as exc:  # nibabel raises many types for a bad header
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if str(path) in detail or str(path.name) in detail or not detail:
            detail = "header cannot be read: truncated or not a NIfTI file"
        raise DataError(f"not a readable NIfTI image ({detail})", path=path) from exc
    if code in _COLOUR_DATATYPES or dtype.fields is not None:
        kind = _COLOUR_DATATYPES.get(code, f"structured {dtype}")
        raise DataError(f"colour image (NIfTI datatype {kind}); tumsyn needs one grey value per voxel "
                        "(an MR magnitude image)", path=path)
    if dtype.kind == "c":
        raise DataError(f"complex-valued image ({dtype.name}); tumsyn needs a magnitude image "
                        "(save abs() of the data, or the scanner's magnitude series)", path=path)
    if dtype.kind not in "biuf":
        raise DataError(f"unsupported image data type {dtype}", path=path)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise DataError(f"expected a 3D image, got shape {shape}", path=path)
    if len(shape) == 4 and shape[3] != 1:
        raise DataError(f"4D image with {shape[3]} volumes; anat sources must be 3D", path=path)
    if min(shape[:3]) < 2:
        raise DataError(f"image is too small to synthesize from (shape {shape})", path=path)
    if any(not (z > 0) for z in zooms):
        raise DataError(f"voxel sizes {zooms} in the header are not positive", path=path)
    zooms = inspect_geometry(header, path, shape).voxel_sizes  # those of the affine used (README "Geometry")
    n_data = int(np.prod(shape)) * dtype.itemsize
    scan = scan_payload(path, offset, n_data, dtype)
    if scan.available < offset + n_data:
        what = "corrupt compressed data" if scan.corrupt else "truncated"
        raise DataError(f"{what}: {scan.available} of {offset + n_data} bytes of header and image data", path=path)
    if scan.n_finite == 0:
        raise DataError("image has no finite values (every voxel is NaN or infinite)", path=path)
    if scan.minimum == scan.maximum:
        what = "all zeros" if scan.minimum == 0 else f"constant (every finite voxel is {scan.minimum:g})"
        raise DataError(f"image is {what}: no signal to synthesize from", path=path)
    return shape, (round(zooms[0], 4), round(zooms[1], 4), round(zooms[2], 4))


def _raw_voxel_sizes(path: Path) -> tuple[float, float, float] | None:
    """pixdim[1:4] of a NIfTI-1 header as stored (nibabel's loader replaces zeros by 1 with a bare
    console message); None when the header cannot be read this way (nibabel then reports it)."""
    import nibabel as nb

    try:
        with nb.openers.ImageOpener(str(path)) as fh:
            header = nb.Nifti1Header.from_fileobj(fh, check=False)
        if int(header["sizeof_hdr"]) != 348:
            return None
        return tuple(float(z) for z in header["pixdim"][1:4])  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - any failure: leave the diagnosis to nib.load
        return None


@dataclass
class PayloadScan:
    """What :func:`scan_payload` found: bytes present (decompressed) and the finite value range."""

    available: int = 0
    corrupt: bool = False
    n_finite: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")


def _decompressed_chunks(path: Path, chunk: int = 1 << 20):
    """The file's bytes (decompressed for .gz, multi-member aware); stops quietly at corruption.

    Yields ``bytes``; a final ``None`` means the compressed stream was corrupt (not just short).
    """
    with open(path, "rb") as fh:
        if not str(path).endswith(".gz"):
            while block := fh.read(chunk):
                yield block
            return
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        while raw := fh.read(chunk):
            while raw:
                try:
                    out = inflater.decompress(raw)
                except zlib.error:
                    yield None
                    return
                if out:
                    yield out
                if inflater.eof:  # another gzip member may follow
                    raw = inflater.unused_data
                    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                else:
                    raw = b""


def scan_payload(path: Path, offset: int, n_data: int, dtype) -> PayloadScan:
    """Count the bytes of header + data that are present and the range of the finite data values."""
    import numpy as np

    scan = PayloadScan()
    itemsize = dtype.itemsize
    position = 0  # bytes seen so far (header included)
    carry = b""
    end = offset + n_data
    try:
        for block in _decompressed_chunks(path):
            if block is None:
                scan.corrupt = True
                break
            start = position
            position += len(block)
            if position <= offset:
                continue
            block = block[max(0, offset - start): max(0, end - start)]
            data = carry + block
            usable = len(data) - len(data) % itemsize
            carry = data[usable:]
            if usable:
                values = np.frombuffer(data[:usable], dtype=dtype)
                if values.dtype.kind == "f":
                    values = values[np.isfinite(values)]
                if values.size:
                    scan.n_finite += int(values.size)
                    scan.minimum = min(scan.minimum, float(values.min()))
                    scan.maximum = max(scan.maximum, float(values.max()))
            if position >= end:
                break
    except OSError:
        scan.corrupt = True
    scan.available = min(position, end)
    return scan
