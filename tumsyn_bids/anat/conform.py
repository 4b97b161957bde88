"""Load and check a source image, reorient it for the engine, and put outputs back in its orientation.

The engine sees every image in RAS+ voxel order (nibabel's closest canonical orientation). The
output is turned back into the source's own axis order and directions, so at the source's voxel
size it lands exactly on the source grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tumsyn_bids.errors import DataError

LOGGER = logging.getLogger("tumsyn.conform")


@dataclass(frozen=True)
class ConformReport:
    """What conform found and did."""

    shape: tuple[int, int, int]
    zooms: tuple[float, float, float]
    orientation: str  # source axis codes, e.g. "LAS"
    repairs: tuple[str, ...]


def _affine_ok(affine: np.ndarray | None) -> bool:
    if affine is None or not np.all(np.isfinite(affine)):
        return False
    det = np.linalg.det(affine[:3, :3])
    return bool(abs(det) > 1e-6)


def choose_affine(header: nib.Nifti1Header, path: str | Path, repairs: list[str] | None = None) -> np.ndarray:
    """The usable voxel-to-world affine: a valid sform, else a valid qform, else voxel sizes."""
    repairs = [] if repairs is None else repairs
    sform, scode = header.get_sform(coded=True)
    qform, qcode = header.get_qform(coded=True)
    if scode and _affine_ok(sform):
        return sform
    if qcode and _affine_ok(qform):
        if scode:
            repairs.append("ignored degenerate sform, used qform")
        return qform
    zooms = np.asarray(header.get_zooms()[:3], dtype=float)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise DataError("no usable orientation: sform/qform are degenerate and voxel sizes invalid", path=path)
    repairs.append("sform/qform missing or degenerate: used voxel sizes and the volume centre")
    return header.get_base_affine()


def load_checked(path: str | Path) -> tuple[nib.Nifti1Image, list[str]]:
    """Read a NIfTI, refuse what cannot be synthesized and repair what safely can.

    Returns the (possibly repaired) image as float32 and the list of repairs made.
    """
    path = Path(path)
    repairs: list[str] = []
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"cannot read image ({type(exc).__name__}: {exc})".splitlines()[0], path=path) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
        repairs.append("dropped singleton 4th dimension")
    if data.ndim != 3:
        raise DataError(f"expected a 3D image, found shape {tuple(data.shape)}", path=path)
    if min(data.shape) < 2:
        raise DataError(f"image is too small to synthesize from (shape {tuple(data.shape)})", path=path)
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        raise DataError("image has no finite values", path=path)
    if not finite.all():
        repairs.append(f"set {int((~finite).sum())} non-finite voxels to 0")
        data = np.where(finite, data, 0.0).astype(np.float32)
    if float(data.max()) == float(data.min()):
        raise DataError("image is constant (no signal)", path=path)
    lowest = float(data.min())
    if lowest < 0:  # some reconstructions store offset or negative intensities: background must be 0
        data = (data - lowest).astype(np.float32)
        repairs.append(f"shifted intensities by {-lowest:g} so that the minimum is 0 (the image has negative values)")

    affine = choose_affine(img.header, path, repairs)
    out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm", "sec")
    return out, repairs


def conform(in_file: str | Path, out_file: str | Path) -> ConformReport:
    """Check ``in_file`` and write it, RAS+-reoriented float32, to ``out_file``."""
    img, repairs = load_checked(in_file)
    for repair in repairs:
        LOGGER.warning("%s: %s", in_file, repair)
    canonical = nib.as_closest_canonical(img)
    out = nib.Nifti1Image(np.asarray(canonical.dataobj, dtype=np.float32), canonical.affine)
    out.header.set_xyzt_units("mm", "sec")
    nib.save(out, str(out_file))
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return ConformReport(
        shape=tuple(int(s) for s in img.shape[:3]),  # type: ignore[arg-type]
        zooms=zooms,  # type: ignore[arg-type]
        orientation="".join(nib.aff2axcodes(img.affine)),
        repairs=tuple(repairs),
    )


def to_source_orientation(img: nib.Nifti1Image, reference: str | Path) -> nib.Nifti1Image:
    """Reorient a RAS+ image to the axis order/directions of ``reference`` (same world position)."""
    ref = nib.load(str(reference))
    ref_affine = choose_affine(ref.header, reference)
    target = nib.orientations.io_orientation(ref_affine)
    current = nib.orientations.io_orientation(img.affine)
    transform = nib.orientations.ornt_transform(current, target)
    return img.as_reoriented(transform)
