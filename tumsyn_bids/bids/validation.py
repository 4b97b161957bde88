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


SKIP_HINT = "--skip-bids-validation runs anyway"


def run_validator(bids_dir: Path, exe: str, timeout: float = 600.0, *, ignore_nifti_headers: bool = False) -> list[str]:
    """Run the official validator; return warning lines; raise on errors.

    Errors that are harmless for anatomical synthesis (:func:`harmless_reason`) become warning
    lines. The first remaining error is raised as one line: the file, the sidecar key or TSV column,
    the validator's message, its code and rule, how many more, and that ``--skip-bids-validation``
    runs anyway.
    """
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
    code_messages = report["issues"].get("codeMessages") or {}
    errors, warnings, seen = [], [], set()
    for issue in issues:
        if issue.get("severity") != "error":
            continue
        key = (issue.get("code"), issue.get("location"), issue.get("subCode"))
        if key in seen:  # one schema error is reported once per alternative of the schema
            continue
        seen.add(key)
        reason = harmless_reason(issue, Path(bids_dir))
        if reason:
            warnings.append(f"{Path(bids_dir) / (issue.get('location') or '/').lstrip('/')}: "
                            f"{issue.get('code')} (a bids-validator-deno error) only warned about: {reason}")
        else:
            errors.append(issue)
    if errors:
        raise BidsValidationError(refusal_line(errors[0], len(errors) - 1, bids_dir, code_messages),
                                  path=Path(bids_dir) / (errors[0].get("location") or "/").lstrip("/"))
    return warnings


def issue_message(issue: dict, code_messages: dict | None = None) -> str:
    """The validator's own words for one issue, without the field description it appends."""
    text = str(issue.get("issueMessage") or "")
    text = text.split("Field description:")[0]
    text = " ".join(text.split()).strip(" .:")
    if not text:
        text = " ".join(str((code_messages or {}).get(issue.get("code"), "")).split()).strip(" .")
    return text if len(text) <= 160 else text[:157].rstrip(" .,") + "..."


def refusal_line(issue: dict, n_more: int, bids_dir: Path | str, code_messages: dict | None = None) -> str:
    """One refusal line (after the file):
    ``[key K: |column C: ]<message> (bids-validator-deno CODE, rule R)[; N more ...]; <SKIP_HINT>``.
    """
    location = str(issue.get("location") or "")
    sub = issue.get("subCode")
    what = ""
    if sub:
        what = f"column {sub}: " if location.endswith(".tsv") else f"key {sub}: "
    message = issue_message(issue, code_messages) or "invalid"
    rule = f", rule {issue['rule']}" if issue.get("rule") else ""
    more = (f"; {n_more} more error(s): run `bids-validator-deno {bids_dir}` for all" if n_more > 0 else "")
    return f"{what}{message} (bids-validator-deno {issue.get('code')}{rule}){more}; {SKIP_HINT}"


# Validator errors that do not matter for anatomical synthesis (README "Validation"): the NiPreps
# apps (fMRIPrep, sMRIPrep, NiBabies, QSIPrep) pass PARTICIPANT_ID_MISMATCH and TSV value checks to
# their validator's ignore list; here they are warned about only in the narrow cases below.
def harmless_reason(issue: dict, bids_dir: Path) -> str | None:
    """Why a validator error is only a warning here, or None when it stays an error.

    - ``PARTICIPANT_ID_MISMATCH`` when every ``sub-*`` folder missing from participants.tsv holds
      no file (an empty folder has nothing to synthesize from).
    - ``TSV_VALUE_INCORRECT_TYPE`` in an optional participants.tsv column (not participant_id):
      age and sex are read leniently, a value that cannot be read is None in the prompt.
    - ``NOT_INCLUDED`` for a path that ``.bidsignore`` lists (the validator still reports folders
      given as ``folder/``).
    """
    code = issue.get("code")
    location = str(issue.get("location") or "")
    if code == "PARTICIPANT_ID_MISMATCH":
        extra = _subject_folders_not_listed(bids_dir)
        if extra is not None and extra and all(not any(p.is_file() for p in d.rglob("*")) for d in extra):
            names = ", ".join(d.name for d in extra)
            return f"subject folder(s) {names} are empty and not in participants.tsv; nothing there to synthesize"
        return None
    if code == "TSV_VALUE_INCORRECT_TYPE" and location == "/participants.tsv" and issue.get("subCode") not in (
            None, "participant_id"):
        return (f"column {issue.get('subCode')} holds a value of the wrong type ({issue_message(issue)}); "
                "it is optional, and a value the prompt cannot read becomes None")
    if code == "NOT_INCLUDED" and bidsignored(bids_dir, location):
        return f"{location.lstrip('/')} is listed in .bidsignore"
    return None


def _subject_folders_not_listed(bids_dir: Path) -> list[Path] | None:
    """``sub-*`` folders whose label is not in participants.tsv (None when the table cannot be read)."""
    table = Path(bids_dir) / "participants.tsv"
    try:
        lines = table.read_text(encoding="utf-8-sig").splitlines()
    except OSError:
        return None
    if not lines:
        return None
    header = lines[0].split("\t")
    if "participant_id" not in header:
        return None
    col = header.index("participant_id")
    listed = {row.split("\t")[col].strip() for row in lines[1:] if row.strip() and len(row.split("\t")) > col}
    return [d for d in sorted(Path(bids_dir).glob("sub-*")) if d.is_dir() and d.name not in listed]


def bidsignored(bids_dir: Path, location: str) -> bool:
    """Whether ``location`` (``/a/b``, relative to the dataset) matches a ``.bidsignore`` pattern."""
    import fnmatch

    try:
        patterns = (Path(bids_dir) / ".bidsignore").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    path = location.strip("/")
    parts = path.split("/")
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        anchored = pattern.startswith("/")
        pattern = pattern.strip("/").replace("**/", "")
        tails = [path] if anchored else ["/".join(parts[i:]) for i in range(len(parts))]
        for tail in tails:
            if fnmatch.fnmatch(tail, pattern) or fnmatch.fnmatch(tail, pattern + "/*"):
                return True
            if "/" not in pattern and any(fnmatch.fnmatch(part, pattern) for part in tail.split("/")[:1]):
                return True
    return False


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
