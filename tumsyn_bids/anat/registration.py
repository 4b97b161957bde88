"""antspyx registration helpers (imported lazily: ants is slow to import)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

ANTS_SEED = 42


def ants_registration(fixed, moving, **kwargs):
    """``ants.registration`` with a fixed seed for ANTs' random metric sampling (``ANTS_RANDOM_SEED``,
    unless the user set one), so that a rerun or a retry registers identically."""
    import ants

    os.environ.setdefault("ANTS_RANDOM_SEED", str(ANTS_SEED))
    return ants.registration(fixed=fixed, moving=moving, **kwargs)


def _read(path: str | Path):
    import ants

    return ants.image_read(str(path), pixeltype="float")


def rigid_resample(fixed: str | Path, moving: str | Path, *, images: tuple[str | Path, ...] = (),
                   interpolators: tuple[str, ...] = (), type_of_transform: str = "Rigid",
                   reference: str | Path | None = None) -> list[np.ndarray]:
    """Register ``moving`` to ``fixed``; return ``images`` (on moving's grid) resampled to ``fixed``.

    With no ``images`` the registered ``moving`` itself is returned. ``reference`` (same world
    space as ``fixed``, any grid) is the grid to resample onto instead of ``fixed``'s.
    """
    import ants

    fixed_img, moving_img = _read(fixed), _read(moving)
    target = _read(reference) if reference is not None else fixed_img
    reg = ants_registration(fixed_img, moving_img, type_of_transform=type_of_transform)
    todo = images or (moving,)
    interps = interpolators or tuple("linear" for _ in todo)
    out = []
    for image, interp in zip(todo, interps, strict=True):
        moved = ants.apply_transforms(fixed=target, moving=_read(image), transformlist=reg["fwdtransforms"],
                                      interpolator=interp)
        out.append(moved.numpy())
    return out


def resample_to(reference: str | Path, image: str | Path, interpolator: str = "linear") -> np.ndarray:
    """Resample ``image`` onto ``reference``'s grid by world coordinates (identity transform)."""
    import ants

    ref, img = _read(reference), _read(image)
    return ants.resample_image_to_target(img, ref, interp_type=interpolator).numpy()


def register_to_template(moving: str | Path, template: str | Path, out_image: str | Path,
                         out_xfm: str | Path, *, moving_mask: str | Path | None = None,
                         type_of_transform: str = "Affine") -> None:
    """Register ``moving`` to ``template``; write the moved image and a composite .h5 transform."""
    import ants

    fixed_img, moving_img = _read(template), _read(moving)
    kwargs = {}
    if moving_mask is not None:
        kwargs["moving_mask"] = _read(moving_mask)
    reg = ants_registration(fixed_img, moving_img, type_of_transform=type_of_transform,
                            write_composite_transform=True, **kwargs)
    composite = reg["fwdtransforms"]
    if isinstance(composite, list):
        composite = composite[0]
    Path(out_xfm).write_bytes(Path(composite).read_bytes())
    ants.image_write(reg["warpedmovout"], str(out_image))


def array_to_nifti(data: np.ndarray, reference: str | Path, dtype=np.float32) -> nib.Nifti1Image:
    """Wrap ``data`` (on ``reference``'s grid) in a NIfTI with the reference's affine."""
    ref = nib.load(str(reference))
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), ref.affine)
    img.header.set_xyzt_units("mm", "sec")
    return img


# --- multi-source synthesis: co-register a further source of the session to the reference source --------

# A further source is registered rigidly to the reference, starting from the scanner (header) alignment
# (images of one session share scanner space), with a short pyramid (:func:`coreg_pyramid`): levels at
# about 4 mm and 2 mm voxels, then a few iterations at full resolution. On a 1 mm simulated pair
# (181x208x205, FLAIR to T1w, 3 mm / 2.5 deg off, one busy CPU thread): 43 s, residual 1.2 % of the
# brain signal against the truth, where shrink 2,1 at full resolution took 93 s (1.3 %) and stopping at
# 2 mm 20 s (2.3 %).
# Its QC has two parts, both measured on the project's simulated sessions (4 mm, T1w reference,
# T2w/FLAIR/PDw further sources, noise and bias on; measured for issue 20):
# - the size of the correction: scans of one session agree in scanner space up to head motion between
#   them (a few mm). A correction above MAX_SHIFT_MM / MAX_ROTATION_DEG means the headers disagree or the
#   registration jumped to another optimum; either way the source is not trusted. (A 20 mm header shift IS
#   undone by the registration, NMI identical to the aligned pair: this rule is what drops it.)
# - normalised mutual information inside the reference brain mask after registration, 32 bins: aligned
#   pairs of 13 simulated sessions (skull on and off) score 1.018-1.113 (the lowest: PDw, whose contrast to
#   a T1w is weak), the same T1w against uniform noise 1.0014-1.0035 (the finite-sample bias of MI). The
#   floor 1.01 sits between them: it catches a registration that leaves the images unrelated (a failed
#   optimisation, a wrong or empty image). NMI cannot tell a PDw 2 voxels off from an aligned one
#   (1.015-1.030 vs 1.018-1.037), so small residual misalignment is not what this check is for.
COREG_LEVELS_MM = (4.0, 2.0)  # voxel sizes of the coarse pyramid levels; full resolution comes last
NMI_BINS = 32
NMI_THRESHOLD = 1.01
MAX_SHIFT_MM = 10.0
MAX_ROTATION_DEG = 10.0
NMI_METRIC = f"normalised mutual information (H(A)+H(B))/H(A,B) inside the brain mask, {NMI_BINS} bins"


def normalised_mutual_information(a: np.ndarray, b: np.ndarray, mask: np.ndarray, bins: int = NMI_BINS) -> float:
    """Studholme's NMI ``(H(a) + H(b)) / H(a, b)`` of the voxels inside ``mask`` (1: independent, 2: identical)."""
    mask = np.asarray(mask, dtype=bool) & np.isfinite(a) & np.isfinite(b)
    x, y = np.asarray(a, dtype=np.float64)[mask], np.asarray(b, dtype=np.float64)[mask]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 1.0  # a constant image says nothing about the other

    def clip(v):
        lo, hi = np.percentile(v, (0.5, 99.5))
        return np.clip(v, lo, hi if hi > lo else lo + 1.0)

    joint, _, _ = np.histogram2d(clip(x), clip(y), bins=bins)
    joint = joint / joint.sum()

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    h_joint = entropy(joint)
    return (entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))) / h_joint if h_joint > 0 else 1.0


def coreg_pyramid(voxel_mm: float) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """(shrink factors, smoothing sigmas in voxels, iterations) for a reference of ``voxel_mm`` voxels.

    Levels at about :data:`COREG_LEVELS_MM`, then full resolution (10 iterations: a polish). Coarse
    images (>= 3 mm) get shrink 2 then full resolution.
    """
    factors = sorted({max(1, round(level / voxel_mm)) for level in COREG_LEVELS_MM} | {1}, reverse=True)
    if len(factors) == 1:
        return (2, 1), (1.0, 0.0), (200, 100)
    iterations = tuple([100, 50][: len(factors) - 1]) + (10,) if len(factors) > 2 else (200, 100)
    return tuple(factors), tuple(f / 2.0 if f > 1 else 0.0 for f in factors), iterations


def coregister_source(reference: str | Path, mask: str | Path, moving: str | Path, out_file: str | Path,
                      *, threshold: float = NMI_THRESHOLD) -> dict:
    """Register ``moving`` (a further source, conformed) rigidly to ``reference``; resample it onto its grid.

    Writes the registered image to ``out_file`` and returns its QC record: ``Metric``, ``Value`` (NMI
    inside ``mask`` after registration), ``Threshold``, ``ShiftMm`` / ``RotationDeg`` (the correction),
    ``Kept`` and, when the source is dropped, ``Warning``. A registration that fails outright drops the
    source too (never raises for a bad image pair).
    """
    import ants

    fixed_img, moving_img = _read(reference), _read(moving)
    ref_data = fixed_img.numpy()
    brain = np.asarray(nib.load(str(mask)).dataobj) > 0
    record: dict = {"Metric": NMI_METRIC, "Threshold": threshold,
                    "Registration": "rigid (antspyx, mutual information) from the scanner alignment"}
    try:
        shrink, sigmas, iterations = coreg_pyramid(float(min(fixed_img.spacing)))
        reg = ants_registration(fixed_img, moving_img, type_of_transform="Rigid", initial_transform="Identity",
                                aff_shrink_factors=shrink, aff_smoothing_sigmas=sigmas, aff_iterations=iterations)
        moved = ants.apply_transforms(fixed=fixed_img, moving=moving_img, transformlist=reg["fwdtransforms"],
                                      interpolator="linear").numpy()
        params = np.asarray(ants.read_transform(reg["fwdtransforms"][0]).parameters, dtype=float)
        rotation = params[:9].reshape(3, 3)
        cos = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
        record["ShiftMm"] = round(float(np.linalg.norm(params[9:12])), 2)
        record["RotationDeg"] = round(float(np.degrees(np.arccos(cos))), 2)
    except Exception as exc:  # noqa: BLE001 - a failed registration drops the source, it never crashes the run
        moved = ants.resample_image_to_target(moving_img, fixed_img, interp_type="linear").numpy()
        record.update(Value=None, Kept=False, Warning=f"registration failed ({exc}); source not used")
        nib.save(array_to_nifti(moved, reference), str(out_file))
        return record
    value = normalised_mutual_information(ref_data, moved, brain)
    record["Value"] = round(value, 4)
    problems = []
    if value < threshold:
        problems.append(f"NMI {value:.3f} < {threshold} after registration")
    if record["ShiftMm"] > MAX_SHIFT_MM or record["RotationDeg"] > MAX_ROTATION_DEG:
        problems.append(f"registration had to move it {record['ShiftMm']:.1f} mm / {record['RotationDeg']:.1f} deg "
                        f"(> {MAX_SHIFT_MM:g} mm / {MAX_ROTATION_DEG:g} deg: scans of one session should agree "
                        "in scanner space; check its header)")
    record["Kept"] = not problems
    if problems:
        record["Warning"] = "misregistered: " + "; ".join(problems) + "; source not used"
    nib.save(array_to_nifti(moved, reference), str(out_file))
    return record


def kept_sources(files, prompts, records) -> list[tuple[str, str | None]]:
    """``(registered file, source prompt)`` of the further sources whose registration QC kept them."""
    return [(str(f), p or None) for f, p, r in zip(files, prompts, records, strict=True) if r.get("Kept")]
