"""Multi-source synthesis end to end (issue 20): real CLI, real antspyx registration, the bundled tumsyn-small.

One simulated session holds T1w, T2w and PDw (skull-stripped, 4 mm) and misses FLAIR. The PDw's header
is shifted by 20 mm: its registration to the T1w reference needs a 20 mm correction, which the QC
refuses, so PDw is dropped with a warning (console, sidecar, report) and FLAIR is made from T1w + T2w.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

HERE = Path(__file__).parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _helpers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tumsyn_e2e_helpers_multi", HERE / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


H = _helpers()
SHIFT_MM = 20.0


@pytest.fixture(scope="module")
def three_contrasts(tmp_path_factory) -> Path:
    from tumsyn_bids.physics.phantoms import mni_phantom
    from tumsyn_bids.physics.simulate import simulate_subject

    root = tmp_path_factory.mktemp("multi") / "bids"
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "tumsyn multi-source", "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t45\tF\n")
    images = simulate_subject(mni_phantom(H.VOXEL), ["T1w", "T2w", "PDw"], np.random.default_rng(7),
                              voxel_size=H.VOXEL, skull_strip=True)
    for contrast, image in images.items():
        affine = np.array(image.affine, dtype=float)
        if contrast == "PDw":
            affine[0, 3] += SHIFT_MM  # a wrong header: the content sits 20 mm from where the header says
        H._write(root / "sub-01" / "anat" / f"sub-01_{contrast}.nii.gz", image.data, affine,
                 H._sidecar(image.prompt))
    return root


@pytest.fixture(scope="module")
def multi_run(three_contrasts, tmp_path_factory):
    base = tmp_path_factory.mktemp("multi_run")
    out, work = base / "out", base / "work"
    args = [three_contrasts, out, "participant", "-w", work, "--device", "cpu", "--target", "FLAIR",
            "--sources", "auto"]
    start = time.perf_counter()
    proc = H.tumsyn_bids(*args, timeout=800)
    return proc, out, args, time.perf_counter() - start


def test_plan_lists_every_source_with_its_prompt(three_contrasts, tmp_path):
    proc = H.tumsyn_bids(three_contrasts, tmp_path / "out", "participant", "-w", tmp_path / "work",
                         "--target", "FLAIR", "--sources", "auto", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sources: 3 (the first defines the output grid and the brain mask)" in proc.stdout
    lines = [line.strip() for line in proc.stdout.splitlines()]
    first = next(line for line in lines if line.startswith("1. "))
    assert first.startswith("1. sub-01_T1w.nii.gz (T1w; reference, output grid): ")
    assert "T1w" in first.split(": ", 1)[1]
    # further sources in the ranking's order: nearest to FLAIR on the weighting axis first
    assert any(line.startswith("2. sub-01_PDw.nii.gz (PDw; registered rigidly") for line in lines)
    assert any(line.startswith("3. sub-01_T2w.nii.gz (T2w; registered rigidly") for line in lines)


def test_misregistered_source_is_dropped_and_the_others_used(multi_run):
    proc, out, _, _ = multi_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    image = out / "sub-01" / "anat" / "sub-01_desc-tumsyn_FLAIR.nii.gz"
    data = np.asarray(nib.load(str(image)).dataobj)
    assert np.isfinite(data).all() and data.std() > 0
    sidecar = json.loads(image.with_name("sub-01_desc-tumsyn_FLAIR.json").read_text())
    entries = {Path(e["Source"]).name: e for e in sidecar["SynthesisSources"]}
    assert list(entries) == ["sub-01_T1w.nii.gz", "sub-01_PDw.nii.gz", "sub-01_T2w.nii.gz"]
    t2w, pdw = entries["sub-01_T2w.nii.gz"], entries["sub-01_PDw.nii.gz"]
    assert t2w["Used"] is True and t2w["RegistrationQC"]["Kept"] is True
    assert t2w["RegistrationQC"]["ShiftMm"] < 2.0
    assert pdw["Used"] is False and pdw["RegistrationQC"]["Kept"] is False
    assert abs(pdw["RegistrationQC"]["ShiftMm"] - SHIFT_MM) < 3.0  # the registration found the 20 mm
    assert "misregistered" in pdw["Warning"]
    # Sources lists the inputs used: the reference, the kept T2w, the mask; never the dropped PDw
    raw = [s for s in sidecar["Sources"] if s.startswith("bids:raw:")]
    assert raw == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz", "bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]
    assert sidecar["Description"].endswith("with the T2w image of the session registered to it as further evidence; "
                                          "not acquired.")
    assert sidecar["Refinement"]["Applied"] is True
    assert sidecar["Refinement"]["SourceAcquisition"].count(";") == 1  # two sources read: T1w and T2w
    assert "sub-01_PDw.nii.gz" in proc.stderr and "misregistered" in proc.stderr  # the console warning
    report = (out / "sub-01.html").read_text()
    assert 'id="sub-01_desc-tumsyn_FLAIR-sources"' in report
    assert report.count('<span class="fail">dropped</span>') == 1
    assert report.count('<span class="ok">kept</span>') == 1
    # one registration flicker per further source, numbered as in SynthesisSources
    figures = out / "sub-01" / "figures"
    for number in (2, 3):
        assert (figures / f"sub-01_desc-tumsyn_FLAIR_coreg{number}.svg").stat().st_size > 1000
        assert f'id="sub-01_desc-tumsyn_FLAIR-source{number}"' in report
    assert "Source 2: sub-01_PDw.nii.gz (not used)" in report and "Source 3: sub-01_T2w.nii.gz (used)" in report


def test_multi_source_rerun_is_a_noop(multi_run):
    proc, out, args, seconds = multi_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    start = time.perf_counter()
    again = H.tumsyn_bids(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "up to date" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before
    assert time.perf_counter() - start < seconds / 2
