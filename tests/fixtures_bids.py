"""Builders of tiny but real BIDS datasets for tests (real NIfTI files, real JSON sidecars).

Each ``ds_*`` builder reproduces one metadata situation of bids-app-conventions.md section 5
(values copied from the bids-examples sidecars they imitate) and returns the dataset root.
Import it from any test as ``import fixtures_bids`` (tests/ is on pytest's pythonpath) or use the
``fx`` / ``make_ds`` fixtures of tests/conftest.py.

Images are 12x12x12 voxels, so a whole dataset is written in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np

SHAPE = (12, 12, 12)


def write_nifti(path: Path, zooms=(1.0, 1.0, 1.0), shape=SHAPE, dtype=np.int16) -> Path:
    """A small smooth blob image with the given voxel size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[:3]], indexing="ij"))
    data = (1000 * np.exp(-(grid**2).sum(0) * 2)).astype(dtype)
    if len(shape) == 4:
        data = np.repeat(data[..., None], shape[3], axis=3)
    affine = np.diag(list(zooms) + [1.0])
    img = nb.Nifti1Image(data, affine)
    img.header.set_zooms(tuple(zooms) + ((1.0,) if len(shape) == 4 else ()))
    nb.save(img, str(path))
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def write_text(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def make_dataset(root: Path, images: dict[str, dict | None], *, name: str = "fixture",
                 participants: str | None = None, participants_json: dict | None = None,
                 top_sidecars: dict[str, dict] | None = None, sessions: dict[str, str] | None = None,
                 zooms: dict[str, tuple] | None = None, bom: bool = False, crlf: bool = False) -> Path:
    """Write a dataset: ``images`` maps relative NIfTI paths to their sidecar dict (None: no sidecar)."""
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "dataset_description.json", {"Name": name, "BIDSVersion": "1.9.0"})
    if participants is not None:
        write_text(root / "participants.tsv", participants, bom=bom, crlf=crlf)
    if participants_json is not None:
        write_json(root / "participants.json", participants_json)
    for rel, data in (top_sidecars or {}).items():
        write_json(root / rel, data)
    for sub, text in (sessions or {}).items():
        write_text(root / f"sub-{sub}" / f"sub-{sub}_sessions.tsv", text, crlf=crlf)
    for rel, meta in images.items():
        write_nifti(root / rel, zooms=(zooms or {}).get(rel, (1.0, 1.0, 1.0)))
        if meta is not None:
            stem = rel.split(".nii")[0]
            write_json(root / f"{stem}.json", meta)
    return root


# --- the metadata situations (bids-app-conventions.md section 5) ----------------------------------

EYETRACKING_T1W = {"RepetitionTime": 2.3, "EchoTime": 0.00228, "InversionTime": 0.9, "FlipAngle": 9,
                   "MagneticFieldStrength": 3, "Manufacturer": "Siemens", "ManufacturersModelName": "Prisma"}
EYETRACKING_T2W = {"RepetitionTime": 3.2, "EchoTime": 0.564, "FlipAngle": 120, "MagneticFieldStrength": 3,
                   "Manufacturer": "Siemens", "ManufacturersModelName": "Prisma", "MRAcquisitionType": "3D",
                   "ScanningSequence": "SE", "SequenceName": "*spc_314ns"}


def ds_full_pair(root: Path) -> Path:
    """eyetracking_fmri-like: T1w+T2w with full sidecars, two sessions, CRLF participants.tsv,
    sessions.tsv ages that override participants.tsv."""
    images = {}
    for ses in ("01", "02"):
        images[f"sub-01/ses-{ses}/anat/sub-01_ses-{ses}_T1w.nii.gz"] = EYETRACKING_T1W
        images[f"sub-01/ses-{ses}/anat/sub-01_ses-{ses}_T2w.nii.gz"] = EYETRACKING_T2W
    return make_dataset(
        root, images, name="full_pair",
        participants="participant_id\tsex\tage\tGUID\nsub-01\tM\t35\tNDAR123\n",
        sessions={"01": "session_id\tage\nses-01\t35.4\nses-02\t36.6\n"},
        zooms={k: (0.8, 0.8, 0.8) for k in images}, crlf=True,
    )


def ds_inherited(root: Path) -> Path:
    """genetics_ukbb-like: only top-level inherited sidecars (acq-MPRAGE_T1w.json, FLAIR.json)."""
    images = {}
    for sub in ("01", "02"):
        images[f"sub-{sub}/anat/sub-{sub}_acq-MPRAGE_T1w.nii.gz"] = None
        images[f"sub-{sub}/anat/sub-{sub}_FLAIR.nii.gz"] = None
    return make_dataset(
        root, images, name="inherited",
        participants="participant_id\tage\tsex\tgroup\nsub-01\t63\tF\tcontrol\nsub-02\t71\tM\tpatient\n",
        top_sidecars={
            "acq-MPRAGE_T1w.json": {"RepetitionTime": 2.0, "EchoTime": 0.00201, "FlipAngle": 8,
                                    "MagneticFieldStrength": 3, "Manufacturer": "SIEMENS",
                                    "ManufacturersModelName": "Skyra"},
            "FLAIR.json": {"RepetitionTime": 5.0, "EchoTime": 0.395, "MagneticFieldStrength": 3,
                           "Manufacturer": "SIEMENS"},
        },
    )


def ds_ge_excitation(root: Path) -> Path:
    """pheno004-like: GE BRAVO reporting the excitation TR; sex coded m/f with participants.json Levels."""
    meta = {"RepetitionTime": 0.006952, "EchoTime": 0.00292, "InversionTime": 1.06, "FlipAngle": 8,
            "MagneticFieldStrength": 3, "Manufacturer": "GE MEDICAL SYSTEMS",
            "ManufacturersModelName": "DISCOVERY MR750"}
    images = {f"sub-{s}/anat/sub-{s}_T1w.nii.gz": meta for s in ("01", "02")}
    return make_dataset(
        root, images, name="ge",
        participants="participant_id\tsex\tage\nsub-01\tm\t24\nsub-02\tf\t30\n",
        participants_json={"sex": {"Description": "sex of the participant",
                                   "Levels": {"m": "male", "f": "female"}},
                           "age": {"Description": "age", "Units": "years"}},
        zooms={k: (1.0, 1.0, 1.2) for k in images},
    )


def ds_philips_excitation(root: Path) -> Path:
    """mrs_biggaba-like: Philips with RepetitionTimeExcitation only (no RepetitionTime), CRLF."""
    meta = {"RepetitionTimeExcitation": 0.006953, "EchoTime": 0.00313, "InversionTime": 0.865, "FlipAngle": 8,
            "MagneticFieldStrength": 3, "Manufacturer": "Philips Medical Systems",
            "ManufacturersModelName": "Achieva"}
    images = {"sub-S01/anat/sub-S01_T1w.nii.gz": meta}
    return make_dataset(root, images, name="philips",
                        participants="participant_id\tsex\tage\nsub-S01\tF\t27\n", crlf=True)


def ds_gender_fractional(root: Path) -> Path:
    """pet002-like: `gender` column, fractional ages, two sessions, uncompressed .nii."""
    meta = {"RepetitionTime": 1.55, "EchoTime": 0.00304, "InversionTime": 0.8, "FlipAngle": 9,
            "MagneticFieldStrength": 3, "Manufacturer": "Siemens", "ManufacturersModelName": "TrioTim"}
    images = {f"sub-01/ses-{s}/anat/sub-01_ses-{s}_T1w.nii": meta for s in ("baseline", "rescan")}
    return make_dataset(root, images, name="gender",
                        participants="participant_id\tage\tgender\theight\nsub-01\t21.5086\tfemale\t170\n")


def ds_bom_na(root: Path) -> Path:
    """ds000248-like: BOM in participants.tsv header, n/a age/sex; per-file sidecar with landmarks
    only, the real parameters in the top-level T1w.json."""
    images = {"sub-01/anat/sub-01_T1w.nii.gz": {"AnatomicalLandmarkCoordinates": {"LPA": [1, 2, 3]}}}
    return make_dataset(
        root, images, name="bom",
        participants="participant_id\tage\tsex\nsub-01\tn/a\tn/a\nsub-emptyroom\tn/a\tn/a\n",
        top_sidecars={"T1w.json": {"RepetitionTime": 2.0, "EchoTime": 0.095, "FlipAngle": 90,
                                   "MagneticFieldStrength": 3, "Manufacturer": "Siemens",
                                   "ManufacturersModelName": "TIM TRIO"}},
        bom=True,
    )


def ds_missing_sidecars(root: Path) -> Path:
    """ds009-like: no sidecars at all; capitalised `Age`/`Gender` columns."""
    images = {f"sub-{s}/anat/sub-{s}_T1w.nii.gz": None for s in ("01", "02", "03")}
    return make_dataset(root, images, name="nosidecars",
                        participants="participant_id\tAge\tGender\nsub-01\t22\tMale\nsub-02\t19\tF\n")


def ds_many_variants(root: Path) -> Path:
    """ds004332-like: many acq/rec variants per contrast, runs, FLAIR and T2starw; no participants.tsv."""
    t1 = {"RepetitionTime": 2, "EchoTime": 0.00232, "InversionTime": 0.9, "FlipAngle": 8,
          "MagneticFieldStrength": 3, "Manufacturer": "Siemens"}
    t2 = {"RepetitionTime": 4.01, "EchoTime": 0.116, "FlipAngle": 150, "MagneticFieldStrength": 3,
          "Manufacturer": "Siemens", "MRAcquisitionType": "2D", "ScanningSequence": "SE"}
    flair = {"RepetitionTime": 5, "EchoTime": 0.388, "InversionTime": 1.8, "FlipAngle": 120,
             "MagneticFieldStrength": 3, "Manufacturer": "Siemens"}
    t2s = {"RepetitionTime": 0.7, "EchoTime": 0.02, "FlipAngle": 20, "MagneticFieldStrength": 3,
           "Manufacturer": "Siemens"}
    a = "sub-01/anat/sub-01"
    images = {
        f"{a}_acq-mprageNOPMC_rec-wore_run-2_T1w.nii.gz": t1,
        f"{a}_acq-mprageNOPMC_rec-wre_run-1_T1w.nii.gz": t1,
        f"{a}_acq-mpragePMCon_rec-wre_run-1_T1w.nii.gz": t1,
        f"{a}_acq-tsePMCoff_rec-wre_T2w.nii.gz": t2,
        f"{a}_acq-tsePMCon_rec-wre_T2w.nii.gz": t2,
        f"{a}_acq-PMCoff_FLAIR.nii.gz": flair,
        f"{a}_acq-PMCoff_T2starw.nii.gz": t2s,
        "sub-02/anat/sub-02_acq-PMCoff_FLAIR.nii.gz": flair,
        "sub-02/anat/sub-02_acq-PMCoff_T2starw.nii.gz": t2s,
        "sub-03/anat/sub-03_acq-PMCoff_T2starw.nii.gz": t2s,
    }
    return make_dataset(root, images, name="variants")


def ds_age_synonym(root: Path) -> Path:
    """7t_trt-like: `age_at_first_scan_years`, no anat sidecars."""
    images = {"sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": None}
    return make_dataset(root, images, name="7t",
                        participants="participant_id\tsex\tage_at_first_scan_years\thandedness\nsub-01\tF\t29.7\tR\n")


BUILDERS = {
    "full_pair": ds_full_pair,
    "inherited": ds_inherited,
    "ge_excitation": ds_ge_excitation,
    "philips_excitation": ds_philips_excitation,
    "gender_fractional": ds_gender_fractional,
    "bom_na": ds_bom_na,
    "missing_sidecars": ds_missing_sidecars,
    "many_variants": ds_many_variants,
    "age_synonym": ds_age_synonym,
}
