"""The slow, privileged checks, each behind its marker: the podman smoke test and the SLURM cluster.

Both need root (apt-get, debootstrap, podman, munged, slurmctld). Run them with
``python -m pytest -m container tests/containers`` or ``-m slurm``; the scripts also run alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import pytest

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (apt-get, daemons, podman)")


def _script(name: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name)], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=timeout, check=False)


@pytest.mark.slurm
@needs_root
def test_two_participants_through_the_nipype_slurm_plugin(tmp_path, two_subjects, random_checkpoint) -> None:
    slurm_dir = tmp_path / "slurm"
    env = {
        "SLURM_DIR": str(slurm_dir),
        "DEMO": str(two_subjects),
        "DEMO_ARGS": f"--weights {random_checkpoint} --skull-strip off --device cpu --skip-bids-validation",
        "TUMSYN_BIDS": shutil.which("tumsyn-bids") or "tumsyn-bids",
    }
    result = _script("slurm_test.sh", env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SLURM OK" in result.stdout
    for label in ("01", "02"):
        image = slurm_dir / "out" / f"sub-{label}" / "anat" / f"sub-{label}_desc-tumsyn_T2w.nii.gz"
        assert nib.load(image).get_fdata().std() > 0
    # Each nipype node ran as its own SLURM job: the controller allocated more jobs than participants.
    allocated = (slurm_dir / "log" / "slurmctld.log").read_text().count("sched: Allocate JobId")
    assert allocated >= 5


@pytest.mark.container
@needs_root
def test_container_smoke(tmp_path, two_subjects, random_checkpoint) -> None:
    env = {}
    if not (REPO / "tumsyn_bids" / "data" / "models" / "tumsyn-small.pt").is_file():
        # No bundled model yet: the tiny dataset, with random weights under its code/ folder.
        data = shutil.copytree(two_subjects, tmp_path / "bids")
        (data / "code").mkdir()
        shutil.copy(random_checkpoint, data / "code" / "w.pt")
        for path in [tmp_path, *tmp_path.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the container's --user
        env = {"DEMO": str(data), "DEMO_ARGS": "--weights /data/code/w.pt --skull-strip off --device cpu"}
    result = _script("container_smoke.sh", env, timeout=3000)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    out = result.stdout
    assert "SMOKE OK (all)" in out
    assert "network unreachable as expected" in out
    assert "participant level took" in out or "demo dataset" in out
