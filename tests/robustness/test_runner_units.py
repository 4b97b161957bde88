"""Fast checks of the pieces behind the corpus: leftovers, failure lines, log routing, payload scan."""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.bids.derivatives import STALE_SHARED_TEMPORARY_S, dataset_relpath, remove_stale_temporaries
from tumsyn_bids.bids.validation import check_nifti, scan_payload
from tumsyn_bids.workflows.execution import failure_message


def test_leftovers_at_the_top_of_out_dir(tmp_path):
    now = time.time()
    own_html = tmp_path / ".sub-01.html.abc.tmp.html"
    old_shared = tmp_path / ".dataset_description.json.q1.tmp"
    young_shared = tmp_path / ".dataset_description.json.q2.tmp"  # another run may be writing it now
    other_html = tmp_path / ".sub-09.html.zz.tmp.html"  # another participant's run: only when stale
    nested = tmp_path / "sub-01" / "anat" / ".x.nii.gz.k.tmp.nii.gz"
    for path in (own_html, old_shared, young_shared, other_html, nested):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")
    stale = now - STALE_SHARED_TEMPORARY_S - 5
    os.utime(old_shared, (stale, stale))
    removed = remove_stale_temporaries(tmp_path, ["01"], now=now)
    assert sorted(removed) == sorted([own_html, old_shared, nested])
    assert young_shared.exists() and other_html.exists()
    (tmp_path / "dataset_description.json").write_text("{}")
    assert (tmp_path / "dataset_description.json").exists()  # real files are never touched


@pytest.mark.parametrize("line, source, expected", [
    ("tumsyn_bids.errors.DataError: /d/sub-01_T1w.nii.gz: image is constant", "/d/src.nii.gz",
     "/d/sub-01_T1w.nii.gz: image is constant"),
    ("tumsyn_bids.errors.DataError: image has no usable intensity range (p0.01=0, p99.9=0)", "/d/src.nii.gz",
     "/d/src.nii.gz: image has no usable intensity range (p0.01=0, p99.9=0)"),
    ("RuntimeError: CUDA out of memory", "/d/src.nii.gz", "/d/src.nii.gz: RuntimeError: CUDA out of memory"),
    ("tumsyn_bids.errors.OutputError: /o/sub-02/anat/x.nii.gz: cannot create file (Not a directory)", None,
     "/o/sub-02/anat/x.nii.gz: cannot create file (Not a directory)"),
])
def test_failure_line_names_a_file(line, source, expected):
    assert failure_message(line, source) == expected


def test_worker_logging_goes_to_the_file(tmp_path):
    """A fresh process (like a MultiProc worker) importing the interfaces logs nipype to the file only."""
    log = tmp_path / "run.log"
    code = ("import logging, tumsyn_bids.interfaces; "
            "logging.getLogger('nipype.workflow').info('[Node] hello from a worker'); "
            "logging.getLogger('tumsyn.conform').warning('a repair')")
    env = dict(os.environ, TUMSYN_LOG_FILE=str(log))
    env.pop("TUMSYN_CONSOLE_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hello" not in proc.stdout + proc.stderr and "a repair" not in proc.stdout + proc.stderr
    text = log.read_text()
    assert "nipype.workflow INFO: [Node] hello from a worker" in text and "tumsyn.conform WARNING: a repair" in text


def test_routing_is_undone_after_the_run(tmp_path):
    from tumsyn_bids.logs import ENV_LOG_FILE, routed

    nipype_logger = logging.getLogger("nipype")
    before = list(nipype_logger.handlers)
    with routed(tmp_path / "x.log"):
        assert os.environ[ENV_LOG_FILE] == str(tmp_path / "x.log")
        logging.getLogger("nipype.workflow").info("inside")
    assert ENV_LOG_FILE not in os.environ and nipype_logger.handlers == before
    assert "inside" in (tmp_path / "x.log").read_text()


def test_truncated_gz_counts_the_bytes_that_are_there(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((64, 64, 64), dtype=np.float32), np.eye(4)), str(path))
    whole = path.read_bytes()
    expected = 352 + 64**3 * 4
    with gzip.open(path) as fh:
        assert len(fh.read()) == expected
    path.write_bytes(whole[: len(whole) // 3])
    scan = scan_payload(path, 352, 64**3 * 4, np.dtype("<f4"))
    assert 0 < scan.available < expected and not scan.corrupt
    with gzip.open(path) as fh:  # the count agrees with what gzip itself can read before the cut
        got = 0
        try:
            while chunk := fh.read(1024):
                got += len(chunk)
        except EOFError:
            pass
    assert abs(scan.available - got) <= 64 * 1024  # gzip reads ahead in blocks; zlib counts exactly
    with pytest.raises(Exception, match=rf"truncated: {scan.available} of {expected} bytes"):
        check_nifti(path)


def test_offset_intensities_are_not_refused(tmp_path):
    data = np.linspace(-900, -100, 8**3, dtype=np.float32).reshape(8, 8, 8)
    path = tmp_path / "neg.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    assert check_nifti(path)[0] == (8, 8, 8)
    from tumsyn_bids.anat.conform import load_checked

    img, repairs = load_checked(path)
    conformed = np.asarray(img.dataobj)
    assert conformed.min() == 0 and conformed.max() == pytest.approx(800) and "shifted intensities" in repairs[0]


def test_relative_path_comes_from_the_link(tmp_path):
    target = tmp_path / ".git" / "annex" / "objects" / "SHA256E-s1--ab.nii.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    link = tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(target, link.parent))
    assert dataset_relpath(link, tmp_path) == "sub-01/anat/sub-01_T1w.nii.gz"
    alias = tmp_path.parent / f"{tmp_path.name}-alias"
    alias.symlink_to(tmp_path)
    try:  # the dataset reached through a symlinked folder
        assert dataset_relpath(alias / "sub-01/anat/sub-01_T1w.nii.gz", tmp_path) == "sub-01/anat/sub-01_T1w.nii.gz"
    finally:
        alias.unlink()


def test_cuda_without_cuda_fails_before_any_output(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    import fixtures_bids as fx

    bids = fx.make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": fx.EYETRACKING_T1W})
    out = tmp_path / "out"
    env = dict(os.environ, TUMSYN_BIDS_VALIDATOR="builtin")
    proc = subprocess.run([sys.executable, "-m", "tumsyn_bids", bids, out, "participant", "-w", tmp_path / "work",
                           "--device", "cuda"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 70, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tumsyn-bids: error: device 'cuda' requested but CUDA is not available here"), last
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing written: no conform or mask ran first
