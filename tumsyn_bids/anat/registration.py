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
