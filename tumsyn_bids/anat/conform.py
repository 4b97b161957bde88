"""Load and check a source image, reorient it for the engine, and put outputs back in its orientation.

The engine sees every image in RAS+ voxel order (nibabel's closest canonical orientation). The
output is turned back into the source's own axis order and directions, so at the source's voxel
size it lands exactly on the source grid.
"""

from __future__ import annotations

import io
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


# Geometry tolerances: sform and qform "agree" when the volume's corners land within this distance
# (scanner converters write both from the same matrix; float rounding is far below it), and a
# matrix is "orthogonal" when its normalised columns are within this cosine of 90 degrees (ITK,
# hence antspyx, refuses to read a sheared sform without a qform).
CONFLICT_MM = 0.5
SHEAR_COSINE = 1e-4
_XFORM_CODES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "talairach", 4: "mni", 5: "template"}


@dataclass(frozen=True)
class Geometry:
    """The voxel-to-world affine to use for an image and where it came from.

    ``origin``: ``sform``, ``qform``, ``sform, shear removed`` or ``voxel sizes``. ``problems``:
    what was wrong with the header and what was assumed instead, one sentence each (empty for a
    sound header); the planner prints them as warnings and the outputs' sidecars record them.
    """

    affine: np.ndarray
    origin: str
    problems: tuple[str, ...] = ()

    @property
    def voxel_sizes(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    def record(self) -> dict | None:
        """What a sidecar records (``SourceGeometry``): None when nothing had to be repaired."""
        if not self.problems:
            return None
        return {"AffineFrom": self.origin, "Repairs": list(self.problems),
                "Affine": [[round(float(v), 6) for v in row] for row in self.affine]}


def _affine_ok(affine: np.ndarray | None) -> bool:
    if affine is None or not np.all(np.isfinite(affine)):
        return False
    det = np.linalg.det(affine[:3, :3])
    return bool(abs(det) > 1e-6)


def _why_unusable(affine: np.ndarray | None) -> str:
    if affine is None:
        return "invalid quaternion"
    if not np.all(np.isfinite(affine)):
        return "non-finite values"
    return "singular matrix"


def _shear_cosine(affine: np.ndarray) -> float:
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    gram = cols.T @ cols
    return float(np.abs(gram - np.eye(3)).max())


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    ijk = np.array(np.meshgrid(*[[0, max(int(n) - 1, 0)] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    return np.vstack([ijk, np.ones((1, ijk.shape[1]))])


def corner_distance(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance (mm) between the world positions of the volume's 8 corners under ``a`` and ``b``."""
    c = _corners(shape)
    return float(np.linalg.norm((a @ c - b @ c)[:3], axis=0).max())


def _orthogonalised(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The nearest rotation (polar decomposition) times the column lengths, same centre of the volume."""
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    u, _, vt = np.linalg.svd(affine[:3, :3] / zooms)
    out = affine.copy()
    out[:3, :3] = (u @ vt) * zooms
    centre = (np.asarray(shape[:3], dtype=float) - 1.0) / 2.0
    out[:3, 3] = affine[:3, :3] @ centre + affine[:3, 3] - out[:3, :3] @ centre
    return out


def _axcodes(affine: np.ndarray) -> str:
    return "".join(nib.aff2axcodes(affine))


def _fmt(values) -> str:
    return " x ".join(f"{float(v):.4g}" for v in values)


def _qform(header: nib.Nifti1Header) -> tuple[np.ndarray | None, int]:
    code = int(header["qform_code"])
    try:
        return header.get_qform(), code
    except Exception:  # noqa: BLE001 - nibabel raises on an impossible quaternion or qfac
        return None, code


def inspect_geometry(header: nib.Nifti1Header, path: str | Path, shape: tuple[int, ...] | None = None) -> Geometry:
    """Which affine an image's voxels are placed with, and every header problem behind that choice.

    Rules (README, "Geometry"): a usable sform wins (the NIfTI rule, as in nibabel, FSL and SPM);
    a sform/qform pair that disagrees, a degenerate qform beside it, or pixdim voxel sizes that
    differ from it are reported. A sheared sform (which ITK/antspyx cannot read) gives way to a
    usable qform, else to its nearest rotation. A degenerate sform gives way to a usable qform.
    With neither, the voxel sizes (pixdim) and the volume centre are used in nibabel's default
    LAS axis order. A DataError (one line) when not even the voxel sizes are usable.
    """
    shape = tuple(shape or header.get_data_shape()[:3])
    sform = header.get_sform()
    scode = int(header["sform_code"])
    qform, qcode = _qform(header)
    s_ok, q_ok = scode > 0 and _affine_ok(sform), qcode > 0 and _affine_ok(qform)
    pixdim = np.abs(np.asarray(header["pixdim"][1:4], dtype=float))
    problems: list[str] = []

    if s_ok and _shear_cosine(sform) > SHEAR_COSINE:
        angle = float(np.degrees(np.arcsin(min(1.0, _shear_cosine(sform)))))
        if q_ok:
            moved = corner_distance(sform, qform, shape)
            problems.append(f"sform is sheared ({angle:.2g} degrees between voxel axes, unreadable for ANTs): "
                            f"used the qform instead (corners move by up to {moved:.2g} mm)")
            return Geometry(qform, "qform", tuple(problems))
        fixed = _orthogonalised(sform, shape)
        moved = corner_distance(sform, fixed, shape)
        problems.append(f"sform is sheared ({angle:.2g} degrees between voxel axes, unreadable for ANTs) and there "
                        f"is no usable qform: used its nearest rotation (corners move by up to {moved:.2g} mm)")
        return Geometry(fixed, "sform, shear removed", tuple(problems))
    if s_ok:
        if q_ok:
            moved = corner_distance(sform, qform, shape)
            if moved > CONFLICT_MM:
                codes = (f"sform {_axcodes(sform)}, qform {_axcodes(qform)}" if _axcodes(sform) != _axcodes(qform)
                         else f"both {_axcodes(sform)}")
                problems.append(f"sform and qform disagree (corners up to {moved:.3g} mm apart; {codes}): "
                                "used the sform (the NIfTI rule)")
        elif qcode > 0:
            problems.append(f"qform (code {qcode}) is unusable ({_why_unusable(qform)}): ignored, used the sform")
        zooms = np.linalg.norm(sform[:3, :3], axis=0)
        if np.all(pixdim > 0) and not np.allclose(zooms, pixdim, rtol=1e-3, atol=1e-4):
            problems.append(f"voxel sizes in pixdim ({_fmt(pixdim)} mm) differ from the sform's ({_fmt(zooms)} mm): "
                            "used the sform's")
        return Geometry(sform, "sform", tuple(problems))
    if q_ok:
        if scode > 0:
            problems.append(f"sform (code {scode}) is unusable ({_why_unusable(sform)}): used the qform "
                            f"({_axcodes(qform)})")
        return Geometry(qform, "qform", tuple(problems))
    zooms = np.asarray(header.get_zooms()[:3], dtype=float)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise DataError("no usable orientation: sform/qform are degenerate and voxel sizes invalid", path=path)
    base = header.get_base_affine()
    sform_part = f"sform unusable ({_why_unusable(sform)})" if scode > 0 else "no sform"
    qform_part = f"qform unusable ({_why_unusable(qform)})" if qcode > 0 else "no qform"
    why = "no sform or qform (both codes 0)" if scode == 0 and qcode == 0 else f"{sform_part} and {qform_part}"
    problems.append(f"{why}: orientation unknown; assumed {_fmt(zooms)} mm voxels in {_axcodes(base)} axis order "
                    "with the origin at the volume centre (outputs carry the same assumed geometry)")
    return Geometry(base, "voxel sizes", tuple(problems))


def choose_affine(header: nib.Nifti1Header, path: str | Path, repairs: list[str] | None = None) -> np.ndarray:
    """The usable voxel-to-world affine (:func:`inspect_geometry`); its problems are appended to ``repairs``."""
    geometry = inspect_geometry(header, path)
    if repairs is not None:
        repairs.extend(geometry.problems)
    return geometry.affine


def geometry_of(path: str | Path) -> Geometry:
    """:func:`inspect_geometry` of a file's header (reads the header only)."""
    img = nib.load(str(path))
    return inspect_geometry(img.header, path, tuple(img.shape[:3]))


def check_header_geometry(path: str | Path) -> None:
    """Refuse (DataError, one line) a header whose voxels nibabel cannot place at all.

    That is a qform (code > 0) holding an impossible quaternion (b^2 + c^2 + d^2 > 1) without a
    usable sform: nibabel's loader fails on it, so no step could read the image. Every other
    broken sform/qform is repaired by :func:`inspect_geometry`. Unreadable headers are left to
    the loader's own diagnosis.
    """
    header = _raw_header(path)
    if header is None or int(header["qform_code"]) <= 0:
        return
    if int(header["sform_code"]) > 0 and _affine_ok(header.get_sform()):
        return
    if header["pixdim"][0] not in (1, -1):  # nibabel's loader reads any other qfac as 1 (the NIfTI rule)
        header["pixdim"][0] = 1
    qform, code = _qform(header)
    if qform is None:
        bcd = np.asarray([header["quatern_b"], header["quatern_c"], header["quatern_d"]], dtype=float)
        raise DataError(f"qform (code {code}) holds an impossible quaternion "
                        f"(b^2+c^2+d^2 = {float((bcd**2).sum()):.3g} > 1) "
                        "and there is no usable sform: the voxels cannot be placed in space (set the qform "
                        "code to 0 to keep the voxel sizes only)", path=path)


def _raw_header(path: str | Path):
    """The NIfTI-1/-2 header as stored (no checks, no repairs); None when it cannot be read so."""
    try:
        with nib.openers.ImageOpener(str(path)) as fh:
            block = fh.read(540)
        for klass, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
            if len(block) >= size and size in (int.from_bytes(block[:4], "little"), int.from_bytes(block[:4], "big")):
                return klass.from_fileobj(io.BytesIO(block[:size]), check=False)
    except Exception:  # noqa: BLE001 - leave the diagnosis to nib.load
        return None
    return None


def geometry_warnings(path: str | Path) -> list[str]:
    """``<file>: <problem>`` for every geometry repair :func:`inspect_geometry` makes (planner warnings)."""
    return [f"{path}: {problem}" for problem in geometry_of(path).problems]


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
