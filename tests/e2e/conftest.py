"""A tiny simulated BIDS dataset (2-3 subjects at 3 mm) and a random-weight checkpoint, built once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

VOXEL = 4.0


def _write(path: Path, data: np.ndarray, affine: np.ndarray, sidecar: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


def _sidecar(prompt) -> dict:
    out = {"MagneticFieldStrength": prompt.field_strength, "Manufacturer": prompt.vendor,
           "RepetitionTime": prompt.tr_ms / 1000.0, "EchoTime": prompt.te_ms / 1000.0}
    if prompt.ti_ms:
        out["InversionTime"] = prompt.ti_ms / 1000.0
    if isinstance(prompt.flip_angle, float):
        out["FlipAngle"] = prompt.flip_angle
    return out


@pytest.fixture(scope="session")
def sim_bids(tmp_path_factory) -> Path:
    """sub-01: whole-head T1w + acquired T2w (QC); sub-02: skull-stripped T1w, LAS orientation."""
    from tumsyn_bids.physics.phantoms import mni_phantom
    from tumsyn_bids.physics.simulate import simulate_subject

    root = tmp_path_factory.mktemp("sim") / "bids"
    phantom = mni_phantom(VOXEL)
    (root).mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "tumsyn e2e", "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t34\tF\nsub-02\t61\tM\n")
    one = simulate_subject(phantom, ["T1w", "T2w"], np.random.default_rng(1), voxel_size=VOXEL)
    for contrast in ("T1w", "T2w"):
        image = one[contrast]
        _write(root / "sub-01" / "anat" / f"sub-01_{contrast}.nii.gz", image.data, image.affine,
               _sidecar(image.prompt))
    two = simulate_subject(phantom, ["T1w"], np.random.default_rng(2), voxel_size=VOXEL, skull_strip=True)["T1w"]
    las = nib.as_closest_canonical(nib.Nifti1Image(two.data, two.affine)).as_reoriented([[0, -1], [1, 1], [2, 1]])
    _write(root / "sub-02" / "anat" / "sub-02_acq-mprage_T1w.nii.gz", np.asarray(las.dataobj), las.affine,
           _sidecar(two.prompt))
    return root


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1",
                "TEMPLATEFLOW_AUTOUPDATE": "0", "MPLBACKEND": "Agg", "COLUMNS": "200"})
    env.pop("TUMSYN_CONTAINER_TAG", None)
    return env


def tumsyn_bids(*args: str | Path, timeout: float = 400, **kwargs) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-m", "tumsyn_bids", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=cli_env(), **kwargs)


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
