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
