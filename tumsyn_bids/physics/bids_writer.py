"""Write simulated subjects as a BIDS dataset, with noise-free ground truth as a derivative.

Layout::

    OUT/dataset_description.json, README, participants.tsv/.json
    OUT/sub-01[/ses-1]/anat/sub-01[_ses-1]_T1w.nii.gz + .json   (int16 with scl_slope)
    OUT/derivatives/groundtruth/dataset_description.json
    OUT/derivatives/groundtruth/sub-01[/ses-1]/anat/..._desc-noisefree_T1w.nii.gz, ..._desc-brain_mask.nii.gz

Every file is written atomically (temporary name in the same folder, then ``os.replace``) and
deterministically (gzip without timestamps, sorted JSON keys): the same seed gives identical bytes.
Sessions of one subject share the anatomy and tissue values; each session has its own head pose,
bias field and noise.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from tumsyn_bids import __version__
from tumsyn_bids.atomic import atomic_write_bytes
from tumsyn_bids.contrasts import get_contrast
from tumsyn_bids.physics.realism import random_rigid
from tumsyn_bids.physics.simulate import SimulatedImage, draw_subject, simulate_subject
from tumsyn_bids.prompts import T2VAR

BIDS_VERSION = "1.9.0"
SCANNER_FULL_SCALE = 2000.0  # the brain's 99.5th percentile maps here
SCANNER_MAX = 4095  # 12-bit, as scanners store magnitude images

_SCANNING = {"mprage": (["GR", "IR"], ["SK", "SP", "MP"], "MPRAGE"),
             "se": ("SE", ["SK"], "Spin echo"),
             "space": ("SE", ["SK"], "3D turbo spin echo, variable flip angle (SPACE)"),
             "ir": (["SE", "IR"], ["SK"], "Inversion recovery turbo spin echo"),
             "gre": ("GR", ["SP"], "Spoiled gradient echo")}


# ------------------------------------------------------------------------- atomic writes




def write_json(path: Path, data: Mapping) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype=np.float32) -> None:
    """Deterministic .nii.gz (gzip mtime 0); float data stored as an integer ``dtype`` gets
    nibabel's scl_slope scaling, integer data is stored as is."""
    import nibabel as nib

    data = np.asarray(data)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_data_dtype(dtype)
    if data.dtype.kind in "iub":
        img.header.set_slope_inter(1.0, 0.0)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


# ----------------------------------------------------------------------------- naming


def bids_name(subject: str, session: str | None, contrast: str, desc: str | None = None) -> str:
    """``sub-01_ses-1_[acq-X_][ce-X_][desc-X_]<suffix>`` for a simulated contrast."""
    c = get_contrast(contrast)
    parts = [f"sub-{subject}"] + ([f"ses-{session}"] if session else [])
    if c.name == "SWI":
        parts.append("acq-SWI")
    parts += [f"{k}-{v}" for k, v in c.entities.items()]
    if desc:
        parts.append(f"desc-{desc}")
    suffix = "T2starw" if c.name == "SWI" else c.bids_suffix
    return "_".join(parts + [suffix])


def sidecar(image: SimulatedImage, extra: Mapping | None = None) -> dict:
    """BIDS sidecar of a simulated image (times in seconds) plus the exact prompt."""
    p = image.protocol
    scanning, variant, pulse = _SCANNING[p.sequence]
    out = {
        "RepetitionTime": round(p.tr_ms / 1000.0, 6),
        "EchoTime": round(p.te_ms / 1000.0, 6),
        "MagneticFieldStrength": float(image.prompt.field_strength),
        "Manufacturer": p.vendor,
        "ManufacturersModelName": "tumsyn-bids physics simulator",
        "MRAcquisitionType": "2D" if image.slice_thickness else "3D",
        "ScanningSequence": scanning,
        "SequenceVariant": variant,
        "PulseSequenceType": pulse,
        "SliceThickness": float(image.slice_thickness or max(image.prompt.voxel_size)),
        "VoxelSize": [float(v) for v in image.prompt.voxel_size],
        "TumsynPrompt": image.prompt.text(),
    }
    if p.ti_ms is not None:
        out["InversionTime"] = round(p.ti_ms / 1000.0, 6)
    if p.flip_angle == T2VAR or p.sequence == "space":
        out["VariableFlipAngle"] = True
    else:
        out["FlipAngle"] = float(p.flip_angle)
    if extra:
        out.update(extra)
    return out


# ---------------------------------------------------------------------------- dataset


@dataclass
class DatasetSpec:
    """What :func:`simulate_dataset` writes. ``sessions``: sessions per subject (cycled; any
    value > 1 gives every subject ``ses-`` folders). ``extra``: more contrasts for chosen
    (subject index 1-based, session index 1-based) pairs, e.g. ``{(1, 1): ["T2w"]}``."""

    subjects: int = 3
    contrasts: Sequence[str] = ("T1w",)
    sessions: Sequence[int] = (1,)
    extra: Mapping[tuple[int, int], Sequence[str]] = field(default_factory=dict)
    voxel_size: float | Sequence[float] = 1.0
    field_strength: float = 3.0
    seed: int = 0
    skull_strip: bool = False
    thick_slice: tuple[int, float] | None = None
    noise: bool = True
    snr: float = 30.0
    bias: bool = True
    deform: bool = True


def simulate_dataset(out_dir: str | Path, phantom_for_subject: Callable[[int], object], spec: DatasetSpec,
                     log: Callable[[str], None] | None = None) -> list[Path]:
    """Simulate ``spec`` into the BIDS folder ``out_dir``; returns the raw images written.

    ``phantom_for_subject(i)`` gives the phantom of subject ``i`` (0-based). Random draws come
    from ``numpy.random.default_rng([seed, subject, session])``: adding subjects does not change
    the earlier ones.
    """
    out = Path(out_dir)
    if spec.subjects < 1:
        raise ValueError("need at least one subject")
    n_sessions = [int(spec.sessions[i % len(spec.sessions)]) for i in range(spec.subjects)]
    if min(n_sessions) < 1:
        raise ValueError("every subject needs at least one session")
    use_sessions = max(n_sessions) > 1
    gt_root = out / "derivatives" / "groundtruth"
    written: list[Path] = []
    participants = []
    sources = set()
    for s in range(spec.subjects):
        sub = f"{s + 1:02d}"
        phantom = phantom_for_subject(s)
        sources.add(str(getattr(phantom, "source", "")))
        rng = np.random.default_rng([spec.seed, s])
        subject = draw_subject(phantom, spec.field_strength, rng, deform=spec.deform)
        participants.append((sub, subject.age, subject.sex))
        centre = phantom.affine @ np.append((np.asarray(phantom.shape) - 1) / 2, 1.0)
        for t in range(n_sessions[s]):
            ses = str(t + 1) if use_sessions else None
            ses_rng = np.random.default_rng([spec.seed, s, t + 1])
            pose = None if t == 0 else random_rigid(ses_rng, centre[:3])
            contrasts = list(dict.fromkeys([*spec.contrasts, *spec.extra.get((s + 1, t + 1), ())]))
            images = simulate_subject(
                phantom, contrasts, ses_rng, voxel_size=spec.voxel_size, field_strength=spec.field_strength,
                noise=spec.noise, snr=spec.snr, bias=spec.bias, skull_strip=spec.skull_strip,
                thick_slice=spec.thick_slice, subject=subject, pose=pose,
            )
            anat = out / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
            gt_anat = gt_root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
            mask_written = False
            for key, image in images.items():
                # Scanner-like 12-bit integers; the ground truth shares its raw image's scale.
                scale = SCANNER_FULL_SCALE / max(float(np.percentile(image.data[image.mask], 99.5)), 1e-12) \
                    if image.mask.any() else SCANNER_FULL_SCALE / max(float(image.data.max()), 1e-12)
                raw_int = np.clip(np.rint(image.data * scale), 0, SCANNER_MAX).astype(np.int16)
                truth_int = np.clip(np.rint(image.ground_truth * scale), 0, SCANNER_MAX).astype(np.int16)
                name = bids_name(sub, ses, image.contrast)
                extra = {"SkullStripped": spec.skull_strip,
                         "SimulationParameters": {"Seed": spec.seed, "SNR": image.snr, "BiasField": spec.bias,
                                                  "Deformed": spec.deform, "Phantom": phantom.source,
                                                  "Software": f"tumsyn-bids {__version__}"}}
                write_nifti(anat / f"{name}.nii.gz", raw_int, image.affine, np.int16)
                write_json(anat / f"{name}.json", sidecar(image, extra))
                written.append(anat / f"{name}.nii.gz")
                gt_name = bids_name(sub, ses, image.contrast, desc="noisefree")
                write_nifti(gt_anat / f"{gt_name}.nii.gz", truth_int, image.affine, np.int16)
                write_json(gt_anat / f"{gt_name}.json", sidecar(image, {
                    "Description": "noise-free, bias-free simulated image "
                                   "(same grid and intensity scale as the raw image)",
                    "Sources": [f"bids:raw:{(anat / f'{name}.nii.gz').relative_to(out).as_posix()}"],
                    "SkullStripped": spec.skull_strip}))
                if not mask_written:
                    mask_name = "_".join([f"sub-{sub}"] + ([f"ses-{ses}"] if ses else []) + ["desc-brain", "mask"])
                    write_nifti(gt_anat / f"{mask_name}.nii.gz", image.mask.astype(np.uint8), image.affine, np.uint8)
                    write_json(gt_anat / f"{mask_name}.json", {
                        "Type": "Brain", "Description": "exact intracranial mask of the simulated head",
                        "Sources": [f"bids:raw:{(anat / f'{name}.nii.gz').relative_to(out).as_posix()}"]})
                    mask_written = True
                if log:
                    log(f"sub-{sub}{f' ses-{ses}' if ses else ''} {key}: {image.prompt.text()}")
    _write_top_level(out, gt_root, participants, spec, sorted(sources))
    return written


def _write_top_level(out: Path, gt_root: Path, participants, spec: DatasetSpec, sources: list[str]) -> None:
    generated = [{"Name": "tumsyn-bids simulate", "Version": __version__,
                  "Description": "MR physics simulation from tissue maps (tumsyn_bids.physics)"}]
    write_json(out / "dataset_description.json", {
        "Name": "tumsyn-bids simulated dataset", "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
        "License": "CC0", "Authors": ["tumsyn-bids physics simulator"], "GeneratedBy": generated,
    })
    write_json(gt_root / "dataset_description.json", {
        "Name": "tumsyn-bids simulation ground truth", "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
        "GeneratedBy": generated, "SourceDatasets": [{"URL": "bids:raw:"}],
    })
    rows = ["participant_id\tage\tsex"] + [f"sub-{sub}\t{age}\t{sex}" for sub, age, sex in participants]
    atomic_write_bytes(out / "participants.tsv", ("\n".join(rows) + "\n").encode())
    write_json(out / "participants.json", {
        "age": {"Description": "age of the simulated participant", "Units": "year"},
        "sex": {"Description": "sex of the simulated participant",
                "Levels": {"M": "male", "F": "female"}},
    })
    voxel = spec.voxel_size if np.ndim(spec.voxel_size) else [spec.voxel_size] * 3
    readme = (
        "Simulated MRI dataset written by `tumsyn simulate` (tumsyn-bids physics simulator).\n\n"
        f"Phantom(s): {', '.join(sources)}. Field strength {spec.field_strength} T, voxel size "
        f"{tuple(float(v) for v in voxel)} mm, seed {spec.seed}, contrasts {', '.join(spec.contrasts)}.\n"
        "Images are rendered from per-tissue T1/T2/T2*/PD with closed-form sequence equations, then "
        "deformed, blurred, bias-modulated and given Rician noise. Noise-free ground truth and the exact "
        "brain mask are in derivatives/groundtruth/. Every sidecar holds the exact TUMSyn prompt "
        "(TumsynPrompt). Not real data: for demos, tests and training only.\n"
    )
    atomic_write_bytes(out / "README", readme.encode())
