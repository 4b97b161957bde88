"""Fixtures for training tests: a tiny labelled head phantom and a tiny simulated BIDS dataset."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def sphere_head(n: int = 32, voxel: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """FreeSurfer-labelled toy head: WM core, GM shell, two ventricles, outer CSF."""
    axes = [np.arange(n) - (n - 1) / 2 for _ in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2) / (n / 2)
    labels = np.zeros((n, n, n), np.int16)
    labels[r < 0.92] = 24  # CSF
    labels[r < 0.85] = 3  # cortex
    labels[r < 0.65] = 2  # white matter
    for side in (-1, 1):
        vent = ((x - side * n * 0.12) / (n * 0.07)) ** 2 + (y / (n * 0.2)) ** 2 + (z / (n * 0.1)) ** 2 < 1
        labels[vent] = 4 if side < 0 else 43
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = -voxel * (n - 1) / 2
    return labels, affine


def write_bids(root: Path, sessions: dict[str, list[str]], *, shifted_grid: bool = False, seed: int = 0) -> Path:
    """A BIDS dataset simulated by the project's physics: ``{subject: [contrasts]}``."""
    from tumsyn_bids.physics.phantoms import labelmap_phantom
    from tumsyn_bids.physics.simulate import simulate_subject

    rng = np.random.default_rng(seed)
    labels, affine = sphere_head()
    phantom = labelmap_phantom(labels, affine, source="sphere")
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"}))
    rows = ["participant_id\tage\tsex"]
    for k, (sub, contrasts) in enumerate(sessions.items()):
        rows.append(f"sub-{sub}\t{30 + 7 * k}\t{'F' if k % 2 else 'M'}")
        sims = simulate_subject(phantom, contrasts, rng, voxel_size=1.5, deform=False, skull_strip=True,
                                snr=40.0)
        anat = root / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True)
        for i, (name, sim) in enumerate(sims.items()):
            data, aff = sim.data, sim.affine
            if shifted_grid and i == 1:  # second contrast on its own (shifted, cropped) grid
                data, aff = data[2:, :, 1:], aff.copy()
                aff[:3, 3] += aff[:3, :3] @ np.array([2.0, 0.0, 1.0])
            nib.save(nib.Nifti1Image(data, aff), str(anat / f"sub-{sub}_{name}.nii.gz"))
            p = sim.protocol
            meta = {"RepetitionTime": p.tr_ms / 1000, "EchoTime": p.te_ms / 1000, "MagneticFieldStrength": 3,
                    "Manufacturer": "Siemens"}
            if p.ti_ms is not None:
                meta["InversionTime"] = p.ti_ms / 1000
            if not isinstance(p.flip_angle, str):
                meta["FlipAngle"] = p.flip_angle
            (anat / f"sub-{sub}_{name}.json").write_text(json.dumps(meta))
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return root


TINY_CONFIG = """
checkpoint_every: 2
threads: 1
stage1: {steps: 1, batch_size: 4, image_size: 16, downscale: 1}
stage2: {steps: 2, batch_size: 2, lr_size: 8, queries: 256, scale_max: 2.0}
data: {crop_margin: 2}
"""


@pytest.fixture(scope="session")
def tiny_bids(tmp_path_factory) -> Path:
    return write_bids(tmp_path_factory.mktemp("bids") / "ds", {"01": ["T1w", "T2w"], "02": ["T1w", "FLAIR"]},
                      shifted_grid=True)


@pytest.fixture()
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture(scope="module")
def labelmap(tmp_path_factory) -> Path:
    """A 40^3 sphere-head label map on disk (physics training tests)."""
    labels, affine = sphere_head(n=40, voxel=1.0)
    path = tmp_path_factory.mktemp("maps") / "sphere_seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), str(path))
    return path
