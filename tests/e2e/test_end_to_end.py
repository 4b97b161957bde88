"""End to end through the real CLI: participant, group, idempotent rerun, validator, faults.

Runs on a 2-subject dataset simulated at 4 mm with a random-weight tumsyn-small checkpoint (the
wiring, not the image quality, is under test here).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids import __version__

HERE = Path(__file__).parent


def _helpers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tumsyn_e2e_helpers", HERE / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


H = _helpers()
GOLDEN = HERE / "golden_outputs.txt"
SYNTH_KEYS = {"SkullStripped", "Description", "Sources", "TargetContrast", "Prompt", "ModelName",
              "ModelWeightsSHA256", "SoftwareVersion", "Device", "VoxelSize", "SkullStripMethod",
              "MaskedOutput", "SourceAcquisition", "SynthesisConditioning", "SynthesisSeconds"}
ACQ_KEYS = {"RepetitionTime", "EchoTime", "InversionTime", "FlipAngle"}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def listing(out_dir: Path) -> list[str]:
    """Every file under out_dir, relative, except run-specific logs."""
    files = []
    for path in out_dir.rglob("*"):
        rel = path.relative_to(out_dir).as_posix()
        if path.is_dir() or rel.startswith("logs/"):
            continue
        files.append(rel)
    return sorted(files)


def check_complete(out_dir: Path) -> None:
    """No temporary leftovers; every NIfTI loads completely; every JSON parses."""
    leftovers = [p for p in out_dir.rglob(".*") if p.name != ".bidsignore"]
    assert not leftovers, f"partial files left: {leftovers}"
    for path in out_dir.rglob("*.nii.gz"):
        assert np.isfinite(np.asarray(nib.load(str(path)).dataobj)).all(), path
    for path in out_dir.rglob("*.json"):
        json.loads(path.read_text())


def run_args(bids: Path, out: Path, work: Path, weights: Path, *extra: str) -> list[str]:
    return [bids, out, "participant", "-w", work, "--weights", weights, "--device", "cpu",
            "--voxel", "3", "3", "3", "--target", "T2w", *extra]


@pytest.fixture(scope="module")
def first_run(sim_bids, random_checkpoint, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    out, work = base / "out", base / "work"
    start = time.perf_counter()
    proc = H.tumsyn_bids(*run_args(sim_bids, out, work, random_checkpoint, "--save-maps"))
    seconds = time.perf_counter() - start
    return proc, out, work, seconds


def test_participant_level_writes_the_golden_tree(first_run, sim_bids):
    proc, out, _, _ = first_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    group = H.tumsyn_bids(sim_bids, out, "group")
    assert group.returncode == 0, group.stderr[-3000:]
    expected = [line.strip() for line in GOLDEN.read_text().splitlines() if line.strip()]
    assert listing(out) == expected
    check_complete(out)
    table = (out / "group_desc-tumsyn_T2w.tsv").read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("participant_id\tsession_id")
    assert "sub-01" in table[1] and "sub-02" in table[2]
    # sub-01 has an acquired T2w: QC numbers in the table, and not for sub-02
    assert table[1].split("\t")[-3] != "n/a" and table[2].split("\t")[-3] == "n/a"


def test_sidecars_and_affines(first_run, sim_bids):
    proc, out, _, _ = first_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "tumsyn"
    assert description["GeneratedBy"][0]["Version"] == __version__
    assert description["DatasetLinks"]["raw"] == sim_bids.resolve().as_uri()
    for sub, source in (("01", "sub-01/anat/sub-01_T1w.nii.gz"), ("02", "sub-02/anat/sub-02_acq-mprage_T1w.nii.gz")):
        image = out / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-tumsyn_T2w.nii.gz"
        sidecar = json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())
        assert SYNTH_KEYS <= set(sidecar)
        assert not ACQ_KEYS & set(sidecar), "source acquisition must be nested, not top level"
        assert sidecar["Sources"][0] == f"bids:raw:{source}"
        assert sidecar["SynthesisConditioning"]["VoxelSize"] == [3.0, 3.0, 3.0]
        assert sidecar["SynthesisConditioning"]["Modality"] == "T2w"
        assert "Voxel size: (3.0, 3.0, 3.0)" in sidecar["Prompt"]
        img = nib.load(str(image))
        raw = nib.load(str(sim_bids / source))
        assert img.get_data_dtype() == np.float32
        # the output keeps the source's field of view: M = round(N * 4 / 3) voxels of N * 4 / M mm
        n_out = np.round(np.array(raw.shape) * 4.0 / 3.0)
        assert img.shape == tuple(int(n) for n in n_out)
        effective = np.array(raw.shape) * 4.0 / n_out
        assert np.all(np.abs(effective - 3.0) < 0.05)
        assert np.allclose(img.header.get_zooms()[:3], effective, atol=1e-4)
        assert np.allclose(np.linalg.norm(img.affine[:3, :3], axis=0), effective, atol=1e-4)
        assert np.allclose(sidecar["VoxelSize"], effective, atol=1e-3)
        assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(raw.affine)  # source orientation kept
        # the first output voxel's outer corner coincides with the source's
        corner_out = img.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
        corner_raw = raw.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
        assert np.allclose(corner_out, corner_raw, atol=1e-3)
        mask = nib.load(str(out / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-brain_mask.nii.gz"))
        assert mask.shape == raw.shape and np.allclose(mask.affine, raw.affine)
        mask_sidecar = json.loads((out / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-brain_mask.json").read_text())
        assert mask_sidecar["Type"] == "Brain"
        assert mask_sidecar["SkullStripMethod"] == sidecar["SkullStripMethod"]
        for suffix, units in (("T1map", "ms"), ("T2map", "ms"), ("T2starmap", "ms"), ("PDmap", "arbitrary (CSF = 1)")):
            tissue_map = image.with_name(f"sub-{sub}_desc-tumsynT2w_{suffix}.nii.gz")  # --save-maps
            map_sidecar = json.loads(tissue_map.with_name(tissue_map.name.replace(".nii.gz", ".json")).read_text())
            assert map_sidecar["Units"] == units and map_sidecar["ModelEstimate"] is True
            assert "not a measurement" in map_sidecar["Description"]
            assert map_sidecar["Sources"] == sidecar["Sources"]
            assert map_sidecar["ModelWeightsSHA256"] == sidecar["ModelWeightsSHA256"]
            assert np.allclose(nib.load(str(tissue_map)).affine, img.affine)
            assert nib.load(str(tissue_map)).shape == img.shape
    s1 = json.loads((out / "sub-01/anat/sub-01_desc-tumsyn_T2w.json").read_text())
    s2 = json.loads((out / "sub-02/anat/sub-02_desc-tumsyn_T2w.json").read_text())
    assert s1["SkullStripMethod"] == "deepbet"  # whole-head T1w
    assert s2["SkullStripMethod"] == "already-skull-stripped"
    assert s1["QC"]["RealImage"] == "bids:raw:sub-01/anat/sub-01_T2w.nii.gz"
    assert 0.0 <= s1["QC"]["masked"]["ssim"] <= 1.0
    assert "QC" not in s2
    html = (out / "sub-01.html").read_text()  # assembled from the SVG reportlets the run drew
    assert 'data="sub-01/figures/sub-01_desc-tumsyn_T2w_acquired.svg"' in html and "Real vs synthetic" in html
    assert 'data="sub-01/figures/sub-01_desc-tumsyn_T2w_source.svg"' in html
    assert "flickerAnimation" in (out / "sub-01/figures/sub-01_desc-tumsyn_T2w_acquired.svg").read_text()
    assert "_acquired.svg" not in (out / "sub-02.html").read_text()  # no acquired T2w for sub-02


def test_bids_validator_accepts_the_derivatives(first_run):
    proc, out, _, _ = first_run
    assert proc.returncode == 0
    validator = shutil.which("bids-validator-deno") or str(Path(sys.executable).parent / "bids-validator-deno")
    assert Path(validator).exists(), "bids-validator-deno (a dependency of the package) is missing"
    result = subprocess.run([validator, str(out), "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors
    assert result.returncode == 0


def test_rerun_is_a_fast_noop(first_run, sim_bids, random_checkpoint):
    proc, out, work, seconds = first_run
    assert proc.returncode == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    start = time.perf_counter()
    again = H.tumsyn_bids(*run_args(sim_bids, out, work, random_checkpoint, "--save-maps"))  # maps are checked too
    elapsed = time.perf_counter() - start
    assert again.returncode == 0, again.stderr[-3000:]
    assert "up to date" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before
    assert elapsed < seconds / 2 and elapsed < 40, (elapsed, seconds)


def _stripped_dataset(sim_bids: Path, root: Path, subjects: tuple[str, ...]) -> Path:
    """A copy holding only skull-stripped T1w images (fast: no deepbet, no QC)."""
    bids = root / "bids"
    bids.mkdir(parents=True)
    shutil.copy(sim_bids / "dataset_description.json", bids)
    src = sim_bids / "sub-02" / "anat"
    lines = ["participant_id\tage\tsex"]
    for sub in subjects:
        dst = bids / f"sub-{sub}" / "anat"
        dst.mkdir(parents=True)
        for path in src.iterdir():
            shutil.copy(path, dst / path.name.replace("sub-02", f"sub-{sub}"))
        lines.append(f"sub-{sub}\t50\tF")
    (bids / "participants.tsv").write_text("\n".join(lines) + "\n")
    return bids


def test_corrupt_participant_does_not_stop_the_others(sim_bids, random_checkpoint, tmp_path):
    bids = _stripped_dataset(sim_bids, tmp_path, ("01", "02"))
    bad = bids / "sub-02" / "anat" / "sub-02_acq-mprage_T1w.nii.gz"
    img = nib.load(str(bad))
    nib.save(nib.Nifti1Image(np.full(img.shape, np.nan, np.float32), img.affine), str(bad))  # valid header, no data
    out = tmp_path / "out"
    proc = H.tumsyn_bids(*run_args(bids, out, tmp_path / "work", random_checkpoint, "--skip-bids-validation"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "sub-02: FAILED" in proc.stderr and "no finite values" in proc.stderr
    assert "sub-01: ok" in proc.stderr
    assert (out / "sub-01/anat/sub-01_desc-tumsyn_T2w.nii.gz").is_file()
    assert not (out / "sub-02/anat").exists()
    # an all-NaN source is refused at planning (before any node runs): no crash file, one error line
    assert not list((out / "sub-02" / "log").glob("*/crash-*.txt"))
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tumsyn-bids: error: {bad}: image has no finite values"), last
    group = H.tumsyn_bids(bids, out, "group")
    assert group.returncode == 0
    assert "sub-02 is missing outputs" in group.stderr
    assert "sub-02" in (out / "group_desc-tumsyn.html").read_text().split("missing outputs")[1]
    check_complete(out)


def test_sigkill_then_rerun_leaves_no_partial_file(sim_bids, random_checkpoint, tmp_path):
    bids = _stripped_dataset(sim_bids, tmp_path, ("01", "02"))
    out, work = tmp_path / "out", tmp_path / "work"
    args = [sys.executable, "-m", "tumsyn_bids",
            *map(str, run_args(bids, out, work, random_checkpoint, "--nprocs", "1"))]
    proc = subprocess.Popen(args, env=H.cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    try:  # kill once the first participant's image exists (the second is then still to come)
        while time.time() < deadline and not list(out.glob("sub-*/anat/*_desc-tumsyn_T2w.nii.gz")):
            assert proc.poll() is None, "run finished before it could be killed"
            time.sleep(0.02)  # the writers of two participants can follow each other within a second
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(list(out.glob("sub-*/anat/*_desc-tumsyn_T2w.json"))) < 2
    for path in out.rglob("*.nii.gz"):  # whatever exists is whole
        np.asarray(nib.load(str(path)).dataobj)
    again = H.tumsyn_bids(*run_args(bids, out, work, random_checkpoint))
    assert again.returncode == 0, again.stderr[-3000:]
    check_complete(out)
    for sub in ("01", "02"):
        assert (out / f"sub-{sub}/anat/sub-{sub}_desc-tumsyn_T2w.json").is_file()
        assert (out / f"sub-{sub}.html").is_file()


def test_two_participant_runs_in_parallel_share_out_dir(sim_bids, random_checkpoint, tmp_path):
    bids = _stripped_dataset(sim_bids, tmp_path, ("01", "02"))
    out = tmp_path / "out"
    procs = [
        subprocess.Popen([sys.executable, "-m", "tumsyn_bids",
                          *map(str, run_args(bids, out, tmp_path / f"work{sub}", random_checkpoint,
                                             "--participant-label", sub, "--nprocs", "1"))],
                         env=H.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for sub in ("01", "02")
    ]
    results = [p.communicate(timeout=500) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    for sub in ("01", "02"):
        assert (out / f"sub-{sub}/anat/sub-{sub}_desc-tumsyn_T2w.nii.gz").is_file()
    check_complete(out)
