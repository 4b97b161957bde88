"""Fixtures for the scale-out tests: a two-participant 16^3 dataset and a random-weight checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SIZE = 16  # voxels per axis at 3 mm: enough for the whole workflow, written in milliseconds


def _write_subject(root: Path, label: str, rng: np.random.Generator) -> None:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, SIZE)] * 3, indexing="ij"))
    data = 1000 * np.exp(-(grid**2).sum(0) * 2) + rng.normal(0, 5, (SIZE,) * 3)
    path = root / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0])), str(path))
    sidecar = {"MagneticFieldStrength": 3, "Manufacturer": "Siemens", "RepetitionTime": 2.3,
               "EchoTime": 0.003, "InversionTime": 0.9, "FlipAngle": 9}
    path.with_name(f"sub-{label}_T1w.json").write_text(json.dumps(sidecar))


@pytest.fixture(scope="session")
def two_subjects(tmp_path_factory) -> Path:
    """A BIDS dataset with sub-01 and sub-02, one T1w each (readable by any UID)."""
    root = tmp_path_factory.mktemp("scaleout") / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "scale-out test", "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t30\tF\nsub-02\t40\tM\n")
    rng = np.random.default_rng(7)
    for label in ("01", "02"):
        _write_subject(root, label, rng)
    return root


def run_app(*args: str | Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real ``tumsyn-bids`` command in a subprocess."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1",
                    TEMPLATEFLOW_AUTOUPDATE="0", MPLBACKEND="Agg", NIPYPE_NO_ET="1", COLUMNS="200")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tumsyn_bids", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, check=False)
