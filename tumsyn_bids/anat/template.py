"""``--output-spaces MNI152NLin2009cAsym[:res-N]``: a template-space copy of the synthetic image.

The brain-masked source is registered (antspyx, affine) to the template brain; the composite
transform is kept as ``..._from-<suffix>_to-MNI152NLin2009cAsym_mode-image_xfm.h5`` and applied
to the synthetic image. The template comes from a local TEMPLATEFLOW_HOME when it holds
MNI152NLin2009cAsym, else the MNI152 2009a template in nilearn's wheel stands in (recorded in
the sidecar as ``TemplateSource``). Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

TEMPLATE = "MNI152NLin2009cAsym"


def template_image(res: int | None) -> tuple[Path, Path, str]:
    """(template T1w, brain mask, description) at resolution ``res`` (mm) when TemplateFlow has it."""
    home = os.environ.get("TEMPLATEFLOW_HOME")
    if home:
        tpl = Path(home) / f"tpl-{TEMPLATE}"
        for tag in ([f"{res:02d}"] if res else []) + ["01", "02"]:
            t1 = tpl / f"tpl-{TEMPLATE}_res-{tag}_T1w.nii.gz"
            mask = tpl / f"tpl-{TEMPLATE}_res-{tag}_desc-brain_mask.nii.gz"
            if t1.is_file() and mask.is_file() and t1.stat().st_size and mask.stat().st_size:
                return t1, mask, f"TemplateFlow {TEMPLATE} res-{tag} ({tpl})"
    from tumsyn_bids.anat.brainmask import nilearn_template

    t1, mask = nilearn_template()
    return t1, mask, "nilearn MNI152 2009a symmetric (stand-in: TemplateFlow MNI152NLin2009cAsym not available)"


def to_template(source: str | Path, mask: str | Path, synth: str | Path, out_image: str | Path,
                out_xfm: str | Path, *, res: int | None = None) -> dict[str, Any]:
    """Register the masked ``source`` to the template; write the moved ``synth`` and the .h5 transform."""
    import ants

    tpl_t1, tpl_mask, description = template_image(res)
    fixed = ants.image_read(str(tpl_t1), pixeltype="float") * ants.image_read(str(tpl_mask), pixeltype="float")
    if res:
        fixed = ants.resample_image(fixed, (float(res),) * 3, use_voxels=False, interp_type=0)
    moving = ants.image_read(str(source), pixeltype="float") * ants.image_read(str(mask), pixeltype="float")
    from tumsyn_bids.anat.registration import ants_registration

    reg = ants_registration(fixed, moving, type_of_transform="Affine", write_composite_transform=True)
    composite = reg["fwdtransforms"]
    composite = composite[0] if isinstance(composite, list) else composite
    Path(out_xfm).write_bytes(Path(composite).read_bytes())
    moved = ants.apply_transforms(fixed=fixed, moving=ants.image_read(str(synth), pixeltype="float"),
                                  transformlist=[str(out_xfm)], interpolator="linear")
    img = nib.Nifti1Image(moved.numpy().astype(np.float32), _ants_affine(moved))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(img.affine, code=4)
    img.header.set_sform(img.affine, code=4)
    nib.save(img, str(out_image))
    # the brain mask in template space, for --mask-output (write_template_copy applies it)
    moved_mask = ants.apply_transforms(fixed=fixed, moving=ants.image_read(str(mask), pixeltype="float"),
                                       transformlist=[str(out_xfm)], interpolator="nearestNeighbor")
    mask_path = Path(out_image).with_name("template_brain_mask.nii.gz")
    nib.save(nib.Nifti1Image((moved_mask.numpy() > 0.5).astype(np.uint8), img.affine), str(mask_path))
    spacing = [float(s) for s in moved.spacing]
    return {"TemplateSource": description, "Resolution": f"{TEMPLATE} resampled to "
            f"{'x'.join(f'{s:g}' for s in spacing)} mm", "Registration": "affine (antspyx) of the brain-masked source",
            "MaskFile": str(mask_path)}


def _ants_affine(image) -> np.ndarray:
    """nibabel (RAS) affine of an ANTs (LPS) image."""
    direction = np.asarray(image.direction).reshape(3, 3)
    spacing = np.asarray(image.spacing)
    origin = np.asarray(image.origin)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
