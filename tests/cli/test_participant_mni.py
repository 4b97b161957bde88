"""One participant-level run with an oblique, anisotropic source and ``--output-spaces MNI152NLin2009cAsym:res-2``.

Offline: without TEMPLATEFLOW_HOME the MNI152 2009a template in nilearn's wheel stands in (the
sidecar says so). The source is a skull-stripped simulated head (3 x 3 x 5 mm, rotated 15 and 10
degrees off the scanner axes), so no CNN runs; the model has random weights (geometry, not quality).
Checks: the native output sits exactly on the source grid (affine, corners), the template-space
copy on the 2 mm template grid (affine, corners, sform code 4) with the brain where the template's
brain is, and a rerun is a no-op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fixtures_bids as fx
import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow

VOXEL = (3.0, 3.0, 5.0)


def _rotation(ax_deg: float, az_deg: float) -> np.ndarray:
    ax, az = np.radians(ax_deg), np.radians(az_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def _corners(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    return (affine @ np.vstack([ijk, np.ones((1, 8))]))[:3].T


@pytest.fixture(scope="module")
def oblique_dataset(tmp_path_factory) -> tuple[Path, np.ndarray, tuple[int, ...]]:
    import torch

    from tumsyn_bids.physics.phantoms import mni_phantom
    from tumsyn_bids.physics.simulate import simulate_subject

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mni") / "bids"
    fx.make_dataset(root, {"sub-01/anat/sub-01_T1w.nii.gz": dict(fx.EYETRACKING_T1W)})
    sim = simulate_subject(mni_phantom(4.0), ["T1w"], np.random.default_rng(5), voxel_size=VOXEL,
                           skull_strip=True, deform=False)["T1w"]
    centre = sim.affine @ np.append((np.asarray(sim.data.shape) - 1) / 2.0, 1.0)
    turn = np.eye(4)
    turn[:3, :3] = _rotation(15.0, 10.0)
    turn[:3, 3] = centre[:3] - turn[:3, :3] @ centre[:3]
    affine = turn @ sim.affine
    img = nib.Nifti1Image(sim.data.astype(np.float32), affine)
    img.header.set_qform(affine, code=1)  # as scanners write them: sform = qform
    img.header.set_sform(affine, code=1)
    nib.save(img, str(root / "sub-01/anat/sub-01_T1w.nii.gz"))
    return root, affine, sim.data.shape


def _run(bids: Path, out: Path, work: Path, weights: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1",
               TUMSYN_BIDS_VALIDATOR="builtin", MPLBACKEND="Agg", TUMSYN_CACHE=str(work / "cache"))
    env.pop("TEMPLATEFLOW_HOME", None)
    return subprocess.run([sys.executable, "-m", "tumsyn_bids", str(bids), str(out), "participant", "-w", str(work),
                           "--weights", str(weights), "--output-spaces", "MNI152NLin2009cAsym:res-2", "T1w",
                           "--mask-output", "--nprocs", "1"],
                          capture_output=True, text=True, env=env, timeout=600)


def test_oblique_anisotropic_source_to_mni_res2(oblique_dataset, tmp_path, random_checkpoint):
    from tumsyn_bids.anat.template import template_image

    bids, affine, shape = oblique_dataset
    out, work = tmp_path / "out", tmp_path / "work"
    first = _run(bids, out, work, random_checkpoint)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stdout + first.stderr

    anat = out / "sub-01" / "anat"
    native = nib.load(str(anat / "sub-01_desc-tumsyn_T2w.nii.gz"))
    assert native.shape == shape and np.allclose(native.affine, affine, atol=1e-4)
    assert np.allclose(_corners(native.affine, native.shape), _corners(affine, shape), atol=1e-3)

    mni_path = anat / "sub-01_space-MNI152NLin2009cAsym_res-2_desc-tumsyn_T2w.nii.gz"
    mni = nib.load(str(mni_path))
    assert np.allclose(mni.header.get_zooms()[:3], 2.0) and nib.aff2axcodes(mni.affine) == ("R", "A", "S")
    assert mni.header.get_sform(coded=True)[1] == 4 and mni.header.get_qform(coded=True)[1] == 4
    tpl = nib.load(str(template_image(2)[1]))  # the 1 mm stand-in's brain mask: same world box
    assert np.allclose(_corners(mni.affine, mni.shape).min(0), _corners(tpl.affine, tpl.shape).min(0), atol=2.0)
    assert np.allclose(_corners(mni.affine, mni.shape).max(0), _corners(tpl.affine, tpl.shape).max(0), atol=2.0)
    from nilearn.image import resample_to_img

    tpl_brain = resample_to_img(tpl, mni, interpolation="nearest", force_resample=True,
                                copy_header=True).get_fdata() > 0
    brain = np.asarray(mni.dataobj) != 0  # --mask-output: the source's brain, carried to MNI
    dice = 2 * (brain & tpl_brain).sum() / (brain.sum() + tpl_brain.sum())
    assert dice > 0.7, dice  # the oblique head was registered, not just resampled
    sidecar = json.loads(mni_path.with_name(mni_path.name.replace(".nii.gz", ".json")).read_text())
    assert "nilearn" in sidecar["TemplateSource"] and "2x2x2 mm" in sidecar["Resolution"]
    assert (anat / "sub-01_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.h5").is_file()

    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "log" not in p.parts}
    again = _run(bids, out, work, random_checkpoint)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "all 1 planned outputs are up to date" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in written} == written
