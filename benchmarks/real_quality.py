"""Synthesis quality on REAL co-registered multi-contrast scans: the real app against two baselines.

    python benchmarks/real_quality.py DIR [--tasks 'tcga_fg_6692:T1w->T2w'] [--figures FIGDIR]
        [--json out.json] [--target-protocol known|default] [--weights W] [--model M] [--keep-work]

DIR holds real scans for EVALUATION only (e.g. ``../shared/data/real-dev``): nothing here copies
them anywhere but a temporary BIDS dataset in the work folder, and nothing trains on them.

Cases. One case per top-level folder of DIR (or DIR itself when it holds the images): of that
folder and every folder below it, the one with the most contrast images on a single grid (same
shape and affine); ties go to the shallower, then the alphabetically first folder. At least two
images are needed. A contrast image is a ``*.nii[.gz]`` whose name starts with T1w, T1c, T2w,
FLAIR or PDw (case-insensitive; suffixes such as ``_zscore`` are ignored). So in real-dev,
``tcga_fg_6692/sri24_preproc`` (4 co-registered images) is used and ``tcga_fg_6692/native``
(raw, with skull, not co-registered: only T1w and T1c share a grid) is passed over.

Brain mask. ``brainmask*.nii[.gz]`` on the case's grid when present (> 0); otherwise the voxels
that are nonzero in a strict majority of the case's images, holes filled (3D). The majority rule
copes with an image that has a nonzero background (real-dev's tcga FLAIR has almost none at 0).

z-scored images. An image with negative values in more than 1 % of the mask is taken as
z-scored (e.g. BraTS ``*_zscore`` files, whose background is a negative constant) and shifted to
positive inside the mask: ``(x - P0.5 inside mask).clip(0) * mask``. Every image is then masked.

Tasks. Every ordered (source, target) pair of a case with the target in T1w/T2w/FLAIR/PDw. A T1c
source is written as ``sub-X_ce-gadolinium_T1w.nii.gz``, which the app's planner reads as the
contrast T1CE (its source prompt says T1CE). For each task a tiny BIDS dataset holding ONLY the
masked source image (float32) and a JSON sidecar with what the data record is built in the work
folder, and the real app runs in a subprocess:

    python -m tumsyn_bids BIDS OUT participant --target TGT --voxel 1 1 1 -w WORK
        --skip-bids-validation --nprocs 1 --omp-nthreads 2 [target protocol] [--weights] [--model]

Known acquisitions (``KNOWN``, for tcga_fg_6692 only): sidecar ``EchoTime`` in seconds from the
NIfTI descrip of the native series (T1w 0.012, T1c 0.017, T2w 0.091, FLAIR 0.110) and
``Manufacturer`` Siemens; nothing else is recorded (no TR, TI, flip angle or field strength), so
no sidecar field beyond those is written. With ``--target-protocol known`` (default) the target
is prompted as acquired: T2w ``--tr 5000 --te 91 --fa 90`` (2D TSE), FLAIR ``--tr 9000 --te 110
--ti 2500 --fa 150`` (2D IR), T1w ``--tr 500 --te 12 --fa 90`` (2D spin echo). The TEs are the
recorded ones; the TRs, TI and flip angles are TYPICAL values ASSUMED for such sequences because
the data do not record them. Cases without a known protocol, and ``--target-protocol default``,
pass no timing: the app's protocol table decides.

Scoring. The synthetic output (``OUT/sub-*/anat/*_desc-tumsyn_<suffix>.nii.gz``) is resampled
linearly in world coordinates onto the acquired target's grid when the grids differ. Model and
baselines are compared with the acquired target inside the brain mask with
``tumsyn_bids.evaluation.compare`` (both images multiplied by the mask, then its percentile
normalisation; masked PSNR and SSIM). Baselines (they see the acquired target's histogram, so
they are optimistic):
  hist:      the source histogram-matched to the target inside the mask
             (skimage.exposure.match_histograms);
  hist-inv:  the source inverted inside the mask (max - x), then histogram-matched.

Figures (``--figures FIGDIR``): ``real_<case>_<src>-to-<tgt>.png``, rows source | synthetic |
acquired, columns axial | coronal | sagittal (RAS, patient right on the right; cropped to the
brain) through the lesion centre: the voxel of maximum FLAIR hyperintensity over the brain
median (FLAIR smoothed with a 2-voxel Gaussian, inside the mask eroded by 3 voxels) when the case
has a FLAIR, else the mask's centre of mass. Each image has its own 1st-99th percentile window inside the mask.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CONTRASTS = ("T1w", "T1c", "T2w", "FLAIR", "PDw")
TARGETS = ("T1w", "T2w", "FLAIR", "PDw")
# How each contrast is named in the temporary BIDS dataset (entities + suffix).
BIDS_NAME = {"T1w": "T1w", "T1c": "ce-gadolinium_T1w", "T2w": "T2w", "FLAIR": "FLAIR", "PDw": "PDw"}
ZSCORE_NEG_FRACTION = 0.01  # negative values in more than this share of the mask: z-scored
ZSCORE_SHIFT_PERCENTILE = 0.5
NII = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)

# What is known of a case's acquisitions (keyed by case name). Sidecar fields are only those the
# data record; target protocols: recorded TE, TYPICAL (assumed) TR/TI/flip angle, see docstring.
KNOWN: dict[str, dict] = {
    "tcga_fg_6692": {
        "sidecar": {
            "T1w": {"EchoTime": 0.012, "Manufacturer": "Siemens"},
            "T1c": {"EchoTime": 0.017, "Manufacturer": "Siemens"},
            "T2w": {"EchoTime": 0.091, "Manufacturer": "Siemens"},
            "FLAIR": {"EchoTime": 0.110, "Manufacturer": "Siemens"},
        },
        "protocol": {
            "T2w": ["--tr", "5000", "--te", "91", "--fa", "90"],
            "FLAIR": ["--tr", "9000", "--te", "110", "--ti", "2500", "--fa", "150"],
            "T1w": ["--tr", "500", "--te", "12", "--fa", "90"],
        },
    },
}


# --- discovery ------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    folder: Path
    images: dict[str, Path]  # contrast -> file
    mask_file: Path | None = None
    passed_over: list[str] = field(default_factory=list)  # other folders / duplicate files, why


def contrast_of(filename: str) -> str | None:
    """The contrast a file name starts with (``FLAIR_zscore.nii.gz`` -> FLAIR), else None."""
    if not NII.search(filename):
        return None
    stem = NII.sub("", filename).lower()
    for c in CONTRASTS:
        if stem.startswith(c.lower()):
            return c
    return None


def _grid_key(path: Path):
    import nibabel as nib

    img = nib.load(str(path))
    return tuple(img.shape[:3]), np.round(img.affine, 4).tobytes()


def _folder_candidate(folder: Path) -> tuple[dict[str, Path], Path | None, list[str]]:
    """The largest same-grid group of contrast images in ``folder`` (contrast -> file), its mask."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    notes: list[str] = []
    groups: dict = {}
    for p in files:
        c = contrast_of(p.name)
        if c is None:
            continue
        try:
            key = _grid_key(p)
        except Exception as exc:  # unreadable file: pass over, say why
            notes.append(f"{p}: unreadable ({exc.__class__.__name__})")
            continue
        group = groups.setdefault(key, {})
        if c in group:
            notes.append(f"{p.name}: second {c} on the grid, {group[c].name} used")
        else:
            group[c] = p
    if not groups:
        return {}, None, notes
    key, best = max(groups.items(), key=lambda kv: (len(kv[1]), -min(CONTRASTS.index(c) for c in kv[1])))
    best = {c: best[c] for c in CONTRASTS if c in best}
    mask = None
    for p in files:
        if p.name.lower().startswith("brainmask") and NII.search(p.name):
            try:
                if _grid_key(p) == key:
                    mask = p
                    break
            except Exception:
                pass
    return best, mask, notes


def discover(root: Path) -> list[Case]:
    """One case per top-level folder of ``root`` (or ``root`` itself); see the module docstring."""
    root = Path(root)
    tops = [root] if len(_folder_candidate(root)[0]) >= 2 else sorted(p for p in root.iterdir() if p.is_dir())
    cases = []
    for top in tops:
        folders = [top] + sorted(p for p in top.rglob("*") if p.is_dir())
        found = []
        for f in folders:
            images, mask, notes = _folder_candidate(f)
            if images:
                found.append((len(images), len(f.relative_to(top).parts), str(f), images, mask, notes))
        usable = [x for x in found if x[0] >= 2]
        if not usable:
            continue
        usable.sort(key=lambda x: (-x[0], x[1], x[2]))
        n, _, folder, images, mask, notes = usable[0]
        passed = [f"{Path(x[2]).relative_to(root)}: {x[0]} image(s) on one grid, fewer than "
                  f"{Path(folder).relative_to(root)}" for x in found if x[2] != folder]
        cases.append(Case(top.name, Path(folder), images, mask, notes + passed))
    return cases


# --- images ----------------------------------------------------------------------------------------


@dataclass
class CaseData:
    case: Case
    data: dict[str, np.ndarray]  # contrast -> masked, non-negative float32
    affine: np.ndarray
    mask: np.ndarray  # bool
    mask_rule: str
    zscored: list[str]


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return np.nan_to_num(data), img.affine


def majority_mask(images: list[np.ndarray]) -> np.ndarray:
    """Voxels nonzero in a strict majority of the images, holes filled in 3D."""
    from scipy.ndimage import binary_fill_holes

    count = np.sum([np.asarray(im) != 0 for im in images], axis=0)
    return binary_fill_holes(count > len(images) / 2)


def is_zscored(data: np.ndarray, mask: np.ndarray) -> bool:
    values = data[mask]
    return bool(values.size) and float(np.mean(values < 0)) > ZSCORE_NEG_FRACTION


def shift_positive(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(x - P0.5 inside mask).clip(0) * mask``: a z-scored image made non-negative."""
    lo = float(np.percentile(data[mask], ZSCORE_SHIFT_PERCENTILE))
    return (np.clip(data - lo, 0, None) * mask).astype(np.float32)


def load_case(case: Case) -> CaseData:
    raw, affine = {}, None
    for c, p in case.images.items():
        raw[c], aff = load(p)
        affine = aff if affine is None else affine
    if case.mask_file is not None:
        mask = load(case.mask_file)[0] > 0
        rule = f"{case.mask_file.name} (> 0)"
    else:
        mask = majority_mask(list(raw.values()))
        rule = f"nonzero in a strict majority of the {len(raw)} images, holes filled"
    data, zscored = {}, []
    for c, d in raw.items():
        if is_zscored(d, mask):
            zscored.append(c)
            data[c] = shift_positive(d, mask)
        else:
            data[c] = (d * mask).astype(np.float32)
    return CaseData(case, data, affine, mask, rule, zscored)


def to_grid(data: np.ndarray, affine: np.ndarray, ref_shape, ref_affine) -> np.ndarray:
    """Linear resampling of ``data`` onto a reference grid (world coordinates)."""
    from scipy.ndimage import affine_transform

    if tuple(data.shape) == tuple(ref_shape) and np.allclose(affine, ref_affine, atol=1e-4):
        return data.astype(np.float32)
    m = np.linalg.inv(affine) @ ref_affine
    return affine_transform(data, m[:3, :3], m[:3, 3], output_shape=tuple(ref_shape), order=1).astype(np.float32)


# --- baselines and scores --------------------------------------------------------------------------


def hist_match(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from skimage.exposure import match_histograms

    out = np.zeros(image.shape, dtype=np.float32)
    out[mask] = match_histograms(image[mask], target[mask])
    return out


def hist_match_inverted(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The source inverted inside the mask (max - value), then histogram-matched to the target."""
    inverted = np.where(mask, float(image[mask].max()) - image, 0.0).astype(np.float32)
    return hist_match(inverted, target, mask)


def masked_scores(candidate: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Masked PSNR/SSIM/MAE of ``candidate`` against ``reference`` (both masked first)."""
    from tumsyn_bids.evaluation import compare

    m = mask.astype(np.float32)
    return compare(candidate * m, reference * m, mask)["masked"]


def tissue_labels(cd: CaseData) -> tuple[np.ndarray, str]:
    """CSF/GM/WM labels (1/2/3, 0 outside) of a case: antspyx Atropos (k-means initialised, 3 classes)
    on its acquired T1w (else T1c, else the first image) inside the mask, classes ordered by T1w
    intensity (CSF darkest, WM brightest). One segmentation per case, used for every task's
    grey/white contrast, so no image is judged by its own segmentation."""
    import ants

    ref = next((c for c in ("T1w", "T1c") if c in cd.data), next(iter(cd.data)))
    img = ants.from_numpy(cd.data[ref].astype(np.float32))
    msk = ants.from_numpy(cd.mask.astype(np.float32))
    seg = ants.atropos(a=img, x=msk, i="kmeans[3]", m="[0.2,1x1x1]", c="[3,0]")["segmentation"].numpy()
    means = [float(cd.data[ref][seg == k].mean()) if (seg == k).any() else 0.0 for k in (1, 2, 3)]
    order = np.argsort(means)  # darkest first: CSF, GM, WM on a T1w
    labels = np.zeros(seg.shape, np.uint8)
    for new, old in enumerate(order, start=1):
        labels[seg == old + 1] = new
    return labels, ref


def gm_wm_contrast(image: np.ndarray, labels: np.ndarray) -> float:
    """C = (GM - WM) / (GM + WM) of the medians over the GM (2) and WM (3) labels."""
    gm, wm = float(np.median(image[labels == 2])), float(np.median(image[labels == 3]))
    return (gm - wm) / (gm + wm) if gm + wm > 0 else float("nan")


def hot_spot_share(candidate: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Share of mask voxels of ``candidate`` beyond the reference's 99.9th percentile, both read in
    units of their own median inside the mask (hot spots, checkerboard peaks)."""
    c = candidate[mask] / max(float(np.median(candidate[mask])), 1e-12)
    r = reference[mask] / max(float(np.median(reference[mask])), 1e-12)
    return float((c > np.percentile(r, 99.9)).mean())


def add_single_source(rows: list[dict], single_rows: list[dict]) -> None:
    """Each multi-source row gets ``single``: the best zero-shot single-source model run among its sources
    (and that run's calibrated score), from a single-source run of this script."""
    by_task = {r["task"]: r for r in single_rows if "model" in r}
    for r in rows:
        runs = [by_task.get(f"{r['case']}:{s}->{r['target']}") for s in r["source"].split("+")]
        runs = [x for x in runs if x is not None]
        if runs:
            best = max(runs, key=lambda x: x["model"]["psnr"])
            r["single"] = {"psnr": best["model"]["psnr"], "calibrated": best.get("calibrated", {}).get("psnr"),
                           "source": best["source"]}


def summary_line(rows: list[dict]) -> str:
    """``zero-shot wins a/N, calibrated wins b/N, mean gap c dB`` (gap: zero-shot minus best baseline)."""
    scored = [r for r in rows if "model" in r]
    if not scored:
        return "zero-shot wins 0/0, calibrated wins 0/0, mean gap nan dB"
    zero = sum(r["model"]["psnr"] > r[r["best_baseline"]]["psnr"] for r in scored)
    cal = sum(r["calibrated"]["psnr"] > r[r["best_baseline"]]["psnr"] for r in scored)
    gap = float(np.mean([r["model_minus_best_db"] for r in scored]))
    cal_gap = float(np.mean([r["calibrated"]["psnr"] - r[r["best_baseline"]]["psnr"] for r in scored]))
    line = (f"zero-shot wins {zero}/{len(scored)}, calibrated wins {cal}/{len(scored)}, mean gap {gap:+.2f} dB "
            f"(calibrated {cal_gap:+.2f} dB)")
    single = [r for r in scored if "single" in r]
    if single:
        wins = sum(r["model"]["psnr"] > r["single"]["psnr"] for r in single)
        diff = float(np.mean([r["model"]["psnr"] - r["single"]["psnr"] for r in single]))
        line += f"; ahead of the best single-source model {wins}/{len(single)}, mean {diff:+.2f} dB"
    return line


def baselines(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {"hist": hist_match(source, target, mask), "hist-inv": hist_match_inverted(source, target, mask)}


# --- tasks and the app -----------------------------------------------------------------------------


def tasks_of(case: Case, multi: bool = False) -> list[tuple[str, str]]:
    """(source, target) pairs; with ``multi``, leave-one-out source SETS written 'T1w+T2w+FLAIR': for
    each target, all the other contrasts and, when there are three or more, each pair of them."""
    from itertools import combinations

    have = [c for c in CONTRASTS if c in case.images]
    if not multi:
        return [(s, t) for s in have for t in have if t != s and t in TARGETS]
    out = []
    for t in have:
        others = [c for c in have if c != t]
        if t not in TARGETS or len(others) < 2:
            continue
        sets = [tuple(others)] + (list(combinations(others, 2)) if len(others) > 2 else [])
        out += [("+".join(s), t) for s in sets]
    return out


def parse_filters(values: list[str] | None) -> list[tuple[str | None, str | None, str | None]]:
    """``case:SRC->TGT``, ``SRC->TGT`` or ``case`` (comma-separated or repeated) -> filters."""
    out = []
    for value in values or []:
        for item in filter(None, (v.strip() for v in value.split(","))):
            case, _, pair = item.rpartition(":") if ":" in item else ("", "", item)
            if "->" in pair:
                src, tgt = (x.strip() for x in pair.split("->", 1))
            else:
                case, src, tgt = pair, None, None
            out.append((case or None, src or None, tgt or None))
    return out


def selected(case: str, src: str, tgt: str, filters) -> bool:
    if not filters:
        return True
    return any((fc is None or fc == case) and (fs is None or fs.lower() == src.lower())
               and (ft is None or ft.lower() == tgt.lower()) for fc, fs, ft in filters)


def bids_label(case: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", case) or "case"


def write_bids(root: Path, cd: CaseData, src: str) -> Path:
    """A BIDS dataset of the masked source(s) (``src``: one contrast or several joined by '+') with
    their known sidecar fields; returns the first source's path."""
    import nibabel as nib

    paths = [_write_one(root, cd, s, nib) for s in src.split("+")]
    return paths[0]


def _write_one(root: Path, cd: CaseData, src: str, nib) -> Path:
    label = bids_label(cd.case.name)
    anat = root / f"sub-{label}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": f"real_quality {cd.case.name}", "BIDSVersion": "1.8.0", "DatasetType": "raw"}, indent=2))
    (root / "participants.tsv").write_text(f"participant_id\nsub-{label}\n")
    stem = f"sub-{label}_{BIDS_NAME[src]}"
    img = nib.Nifti1Image(cd.data[src], cd.affine)
    img.header.set_data_dtype(np.float32)
    nib.save(img, str(anat / f"{stem}.nii.gz"))
    sidecar = KNOWN.get(cd.case.name, {}).get("sidecar", {}).get(src, {})
    (anat / f"{stem}.json").write_text(json.dumps(sidecar, indent=2))
    return anat / f"{stem}.nii.gz"


def app_command(bids: Path, out: Path, work: Path, case: str, tgt: str, protocol: str,
                weights: str | None, model: str | None, device: str | None,
                refine: bool = True) -> tuple[list[str], str]:
    cmd = [sys.executable, "-m", "tumsyn_bids", str(bids), str(out), "participant", "--target", tgt,
           "--voxel", "1", "1", "1", "-w", str(work), "--skip-bids-validation", "--nprocs", "1",
           "--omp-nthreads", "2"]
    used = "default"
    if protocol == "known" and tgt in KNOWN.get(case, {}).get("protocol", {}):
        cmd += KNOWN[case]["protocol"][tgt]
        used = "known"
    if weights:
        cmd += ["--weights", weights]
    if model:
        cmd += ["--model", model]
    if device:
        cmd += ["--device", device]
    if not refine:
        cmd += ["--no-refine"]
    return cmd, used


def find_output(out: Path, tgt: str) -> Path:
    suffix = {"T1w": "T1w", "T2w": "T2w", "FLAIR": "FLAIR", "PDw": "PDw"}[tgt]
    found = sorted(out.glob(f"sub-*/**/anat/*_desc-tumsyn_{suffix}.nii.gz"))
    found = [p for p in found if "_ce-" not in p.name]
    if not found:
        raise FileNotFoundError(f"no *_desc-tumsyn_{suffix}.nii.gz under {out}")
    return found[0]


# --- figures ---------------------------------------------------------------------------------------


def lesion_centre(cd: CaseData) -> tuple[np.ndarray, str]:
    """Voxel of maximum smoothed FLAIR hyperintensity over the brain median, else the brain centre."""
    from scipy.ndimage import binary_erosion, center_of_mass, gaussian_filter

    if "FLAIR" in cd.data:
        inner = binary_erosion(cd.mask, iterations=3)
        if not inner.any():
            inner = cd.mask
        smooth = gaussian_filter(cd.data["FLAIR"], 2.0)
        excess = np.where(inner, smooth - np.median(cd.data["FLAIR"][cd.mask]), -np.inf)
        return np.array(np.unravel_index(int(np.argmax(excess)), excess.shape)), "FLAIR hyperintensity maximum"
    return np.round(center_of_mass(cd.mask)).astype(int), "brain centre"


def save_figure(path: Path, rows: list[tuple[str, np.ndarray]], mask: np.ndarray, affine: np.ndarray,
                centre, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    ornt = ornt_transform(io_orientation(affine), axcodes2ornt(("R", "A", "S")))
    shape = np.array(mask.shape)
    # the centre voxel in RAS-reoriented array indices
    c = np.zeros(3, int)
    for i, (axis, flip) in enumerate(ornt.astype(int)):
        c[axis] = (shape[i] - 1 - centre[i]) if flip == -1 else centre[i]
    m_ras = apply_orientation(mask, ornt) > 0
    if m_ras.any():  # crop every plane to the brain's bounding box (+4 voxels)
        nz = np.argwhere(m_ras)
        lo, hi = np.maximum(nz.min(0) - 4, 0), np.minimum(nz.max(0) + 5, m_ras.shape)
    else:
        lo, hi = np.zeros(3, int), np.array(m_ras.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=False))
    c = np.clip(c, lo, hi - 1) - lo
    m_ras = m_ras[box]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), facecolor="black")
    for r, (label, vol) in enumerate(rows):
        v = apply_orientation(vol, ornt)[box]
        vals = v[m_ras]
        wlo, whi = np.percentile(vals, (1, 99)) if vals.size else (0.0, 1.0)
        if whi <= wlo:
            whi = wlo + 1e-6
        planes = [v[:, :, c[2]].T, v[:, c[1], :].T, v[c[0], :, :].T]
        for k, (plane, name) in enumerate(zip(planes, ("axial", "coronal", "sagittal"), strict=False)):
            ax = axes[r, k]
            ax.imshow(plane, cmap="gray", vmin=wlo, vmax=whi, origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, color="white", fontsize=9)
            if k == 0:
                ax.set_ylabel(label, color="white", fontsize=9)
    fig.suptitle(title, color="white", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=90, facecolor="black")
    plt.close(fig)


# --- main ------------------------------------------------------------------------------------------


_LABELS: dict[str, np.ndarray] = {}


def _labels_of(cd: CaseData) -> np.ndarray:
    if cd.case.name not in _LABELS:
        _LABELS[cd.case.name], ref = tissue_labels(cd)
        print(f"[{cd.case.name}] tissue labels: Atropos (3 classes) on the acquired {ref}", flush=True)
    return _LABELS[cd.case.name]


def run_task(cd: CaseData, src: str, tgt: str, args, workroot: Path) -> dict:
    case = cd.case.name
    task_dir = workroot / f"{bids_label(case)}_{src}-to-{tgt}"
    if task_dir.exists():
        shutil.rmtree(task_dir)
    bids, out, work = task_dir / "bids", task_dir / "out", task_dir / "work"
    write_bids(bids, cd, src)
    cmd, used = app_command(bids, out, work, case, tgt, args.target_protocol, args.weights, args.model,
                            args.device, refine=not args.no_refine)
    if "+" in src:
        cmd += ["--sources", "auto"]
    row = {"case": case, "source": src, "target": tgt, "task": f"{case}:{src}->{tgt}",
           "protocol": used, "command": " ".join(cmd)}
    print(f"[{row['task']}] running the app ({used} target protocol) ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    row["synthesis_s"] = round(time.perf_counter() - t0, 1)
    (task_dir / "app.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    reference, mask = cd.data[tgt], cd.mask
    for one in src.split("+"):  # several sources: the best single-source oracle of each kind
        base = baselines(cd.data[one], reference, mask)
        for kind in ("hist", "hist-inv"):
            score = masked_scores(base[kind], reference, mask)
            if kind not in row or score["psnr"] > row[kind]["psnr"]:
                row[kind] = {**score, "source": one}
    synth = None
    if proc.returncode != 0:
        row["error"] = f"app exit {proc.returncode}: " + (proc.stderr or proc.stdout).strip()[-600:]
    else:
        try:
            out_file = find_output(out, tgt)
            data, aff = load(out_file)
            row["output"] = out_file.name
            row["output_grid"] = {"shape": list(data.shape), "same_as_target": bool(
                data.shape == reference.shape and np.allclose(aff, cd.affine, atol=1e-4))}
            synth = to_grid(data, aff, reference.shape, cd.affine)
            row["model"] = masked_scores(synth, reference, mask)
            row["calibrated"] = masked_scores(hist_match(synth, reference, mask), reference, mask)
            labels = _labels_of(cd)
            row["gm_wm_contrast"] = {"synthetic": gm_wm_contrast(synth, labels),
                                     "acquired": gm_wm_contrast(reference, labels)}
            row["gm_wm_error"] = abs(row["gm_wm_contrast"]["synthetic"] - row["gm_wm_contrast"]["acquired"])
            row["hot_spots"] = hot_spot_share(synth * mask, reference, mask)
        except Exception as exc:
            row["error"] = f"{exc.__class__.__name__}: {exc}"
    best = max(("hist", "hist-inv"), key=lambda k: row[k]["psnr"])
    row["best_baseline"] = best
    if "model" in row:
        row["model_minus_best_db"] = row["model"]["psnr"] - row[best]["psnr"]
    if args.figures and synth is not None:
        centre, how = lesion_centre(cd)
        title = (f"{case}: {src} -> {tgt}   model {row['model']['psnr']:.1f} dB, "
                 f"{best} {row[best]['psnr']:.1f} dB (masked PSNR)\nslices through the {how}")
        fig = Path(args.figures) / f"real_{case}_{src}-to-{tgt}.png"
        save_figure(fig, [(f"source {src.split('+')[0]}", cd.data[src.split("+")[0]]), ("synthetic", synth * mask),
                          (f"acquired {tgt}", reference)], mask, cd.affine, centre, title)
        row["figure"] = str(fig)
    return row


def print_table(rows: list[dict]) -> None:
    head = (f"{'task':<28} {'zero-shot':>11} {'calibrated':>11} {'hist':>11} {'hist-inv':>11} {'best':>8} "
            f"{'zs-best':>7} {'cal-best':>8} {'|dC|':>6} {'hot %':>6} {'synth s':>7}")
    print(head)
    print("-" * len(head))
    def cell(r, key):
        return f"{r[key]['psnr']:5.2f}/{r[key]['ssim']:.3f}" if key in r else "-"

    for r in rows:
        best = r[r["best_baseline"]]["psnr"]
        cal_gap = r["calibrated"]["psnr"] - best if "calibrated" in r else float("nan")
        print(f"{r['task']:<28} {cell(r, 'model'):>11} {cell(r, 'calibrated'):>11} {cell(r, 'hist'):>11} "
              f"{cell(r, 'hist-inv'):>11} "
              f"{r['best_baseline']:>8} {r.get('model_minus_best_db', float('nan')):>+7.2f} {cal_gap:>+8.2f} "
              f"{r.get('gm_wm_error', float('nan')):>6.3f} {100 * r.get('hot_spots', float('nan')):>6.2f} "
              f"{r['synthesis_s']:>7.1f}")
    print("(masked PSNR dB / masked SSIM. zero-shot: the app's output; calibrated: that output histogram-matched\n"
          " to the acquired target inside the mask, as the baselines are; |dC|: grey/white contrast error\n"
          " |C_syn - C_acq|, C = (GM - WM)/(GM + WM) of medians over Atropos labels; hot %: voxels beyond the\n"
          " acquired image's 99.9th percentile, both in units of their median)")
    print(summary_line(rows))
    for r in rows:
        if "error" in r:
            print(f"ERROR {r['task']}: {r['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="folder of cases of real co-registered scans")
    p.add_argument("--tasks", action="append", metavar="CASE:SRC->TGT",
                   help="only these tasks (also SRC->TGT or CASE; comma-separated or repeated)")
    p.add_argument("--target-protocol", choices=("known", "default"), default="known")
    p.add_argument("--weights", help="passed to the app")
    p.add_argument("--model", help="passed to the app")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="passed to the app")
    p.add_argument("--no-refine", action="store_true", help="pass --no-refine to the app (the network alone)")
    p.add_argument("--multi", action="store_true",
                   help="multi-source leave-one-out: each target from all other contrasts and from each pair")
    p.add_argument("--single", type=Path, metavar="JSON",
                   help="--multi: a single-source run's JSON; adds the best single-source model per task")
    p.add_argument("--figures", type=Path, metavar="FIGDIR", help="write one PNG per task here")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--work-dir", type=Path, help="work folder, kept (default: a temporary one, removed)")
    p.add_argument("--keep-work", action="store_true", help="keep the BIDS datasets, outputs and logs")
    p.add_argument("--list", action="store_true", help="list cases and tasks, run nothing")
    args = p.parse_args(argv)

    if not args.dir.is_dir():
        p.error(f"not a folder: {args.dir}")
    cases = discover(args.dir)
    filters = parse_filters(args.tasks)
    plan = [(c, s, t) for c in cases for s, t in tasks_of(c, args.multi) if selected(c.name, s, t, filters)]
    for c in cases:
        print(f"case {c.name}: {c.folder} [{', '.join(c.images)}]"
              + (f", mask {c.mask_file.name}" if c.mask_file else ""))
        for note in c.passed_over:
            print(f"  passed over: {note}")
    if not plan:
        print("no task selected", file=sys.stderr)
        return 1
    if args.list:
        for c, s, t in plan:
            print(f"  {c.name}:{s}->{t}")
        return 0

    workroot = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="real_quality_"))
    workroot.mkdir(parents=True, exist_ok=True)
    rows, meta_cases, loaded = [], {}, {}
    try:
        for c, s, t in plan:
            if c.name not in loaded:
                loaded.clear()  # one case in memory at a time
                cd = loaded[c.name] = load_case(c)
                meta_cases[c.name] = {"folder": str(c.folder), "images": {k: v.name for k, v in c.images.items()},
                                      "mask": cd.mask_rule, "mask_voxels": int(cd.mask.sum()),
                                      "zscored_shifted": cd.zscored, "passed_over": c.passed_over}
                print(f"case {c.name}: mask = {cd.mask_rule} ({int(cd.mask.sum())} voxels)")
                if cd.zscored:
                    print(f"case {c.name}: z-scored images {cd.zscored} shifted positive inside the mask: "
                          f"(x - P{ZSCORE_SHIFT_PERCENTILE} inside mask).clip(0) * mask")
            rows.append(run_task(loaded[c.name], s, t, args, workroot))
    finally:
        if args.keep_work:
            print(f"work kept in {workroot}")
        elif not args.work_dir:
            shutil.rmtree(workroot, ignore_errors=True)
    print()
    if args.single:
        add_single_source(rows, json.loads(args.single.read_text())["rows"])
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dir": str(args.dir), "target_protocol": args.target_protocol,
                                         "weights": args.weights, "model": args.model,
                                         "cases": meta_cases, "rows": rows}, indent=2, default=float))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
