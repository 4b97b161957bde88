"""The few corpus cases that need a real run (random-weight model, 24^3 images at 4 mm, ~20 s each).

1. A node fails inside the nipype workflow while another participant succeeds (MultiProc):
   the console shows progress and summary only, the last stderr line is the one error line,
   nipype's INFO lines and the traceback are in the log file (and on the console with -vvv).
2. A datalad/git-annex dataset: a present annexed image (with negative intensities) is processed
   and named from the link; a dangling link and a truncated image of two other participants
   fail those participants with the right message and exit 1. Leftover temporaries are removed.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import time
import zlib
from pathlib import Path

import fixtures_bids as fx
import nibabel as nib
import numpy as np
import pytest

H = sys.modules["tumsyn_robustness_helpers"]  # tests/robustness/helpers.py, loaded by conftest.py

pytestmark = pytest.mark.slow

T1 = dict(fx.EYETRACKING_T1W)


def _image(path: Path, offset: float = 0.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 24)] * 3, indexing="ij"))
    data = 1000 * np.exp(-(grid**2).sum(0) * 2) + 20 * rng.random((24, 24, 24)) + offset
    img = nib.Nifti1Image(data.astype(np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    nib.save(img, str(path))
    return path


def _dataset(root: Path, subjects: tuple[str, ...]) -> Path:
    fx.make_dataset(root, {f"sub-{s}/anat/sub-{s}_T1w.nii.gz": T1 for s in subjects},
                    participants="participant_id\tage\tsex\n" + "".join(f"sub-{s}\t45.5\tF\n" for s in subjects))
    for i, s in enumerate(subjects):
        _image(root / f"sub-{s}/anat/sub-{s}_T1w.nii.gz", seed=i)
    return root


def _log_file(out: Path) -> Path:
    logs = sorted((out / "logs").glob("tumsyn-*.log"))
    assert logs
    return logs[-1]


def test_node_failure_console_is_one_line_and_tracebacks_go_to_the_log(tmp_path, robust_run, random_checkpoint):
    bids = _dataset(tmp_path / "bids", ("01", "02"))
    out = tmp_path / "out"
    (out / "sub-02").mkdir(parents=True)
    (out / "sub-02" / "anat").write_text("a file where a folder must go")  # the outputs node of sub-02 fails
    args = ["--weights", random_checkpoint, "--skull-strip", "off", "--nprocs", "2"]
    result, out, work = robust_run(bids, *args, out=out)
    assert result.code == 1, result.stderr[-3000:]
    assert result.stdout == ""  # nipype's INFO lines used to fill stdout
    H.assert_clean_console(result)
    blocked = re.escape(str(out / "sub-02" / "anat"))
    assert re.search(rf"^tumsyn-bids: error: {blocked}/sub-02_\S+: cannot (create|write) file", result.last_line), \
        result.stderr
    assert re.search(r"^  sub-01: ok", result.stderr, re.M) and re.search(r"^  sub-02: FAILED: ", result.stderr, re.M)
    assert (out / "sub-01/anat/sub-01_desc-tumsyn_T2w.nii.gz").is_file()
    log = _log_file(out).read_text()
    assert "Traceback" in log and "[Node] Setting-up" in log  # worker processes log there too
    assert "sub-01_T2w: source " in log and "chosen: source is T1w (preferred)" in log

    again = H.run_cli(bids, out, "participant", "-w", work, *args, "-vvv", cwd=tmp_path)
    assert again.code == 1
    assert "Traceback" in again.stderr  # -vvv shows tracebacks
    assert again.last_line.startswith("tumsyn-bids: error: ") and "sub-02" in again.last_line


def _truncated_payload_bytes(data: bytes) -> int:
    """Bytes a truncated gzip stream decompresses to (what the message must count)."""
    return len(zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data))


def test_annexed_dataset_with_one_dangling_and_one_truncated_participant(tmp_path, robust_run, random_checkpoint):
    bids = _dataset(tmp_path / "bids", ("01", "02", "03"))
    _image(bids / "sub-01/anat/sub-01_T1w.nii.gz", offset=-5000.0)  # negative intensities must process
    H.annex(bids, names_absent=("sub-02_T1w.nii.gz",))
    link = bids / "sub-03/anat/sub-03_T1w.nii.gz"
    content = link.resolve().read_bytes()
    link.unlink()
    link.write_bytes(content[: len(content) * 2 // 3])  # sub-03: a truncated plain file
    present = _truncated_payload_bytes(content[: len(content) * 2 // 3])
    assert 0 < present < 352 + 24**3 * 4

    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 3600
    leftovers = [out / ".dataset_description.json.x1y2.tmp", out / ".sub-01.html.a1b2.tmp.html",
                 out / "sub-01" / "anat" / ".sub-01_desc-tumsyn_T2w.nii.gz.k3.tmp.nii.gz"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
        os.utime(path, (old, old))

    result, out, _ = robust_run(bids, "--weights", random_checkpoint, "--skull-strip", "off")
    assert result.code == 1, result.stderr[-3000:]
    H.assert_clean_console(result)
    assert not any(p.exists() for p in leftovers)
    assert re.search(r"^  sub-01: ok", result.stderr, re.M)
    assert re.search(r"^  sub-02: FAILED: \S+sub-02_T1w.nii.gz: dangling symlink.*datalad get sub-02_T1w.nii.gz",
                     result.stderr, re.M)
    total = 352 + 24**3 * 4
    assert re.search(rf"^  sub-03: FAILED: \S+sub-03_T1w.nii.gz: truncated: {present} of {total} bytes",
                     result.stderr, re.M), result.stderr
    assert re.search(r"^tumsyn-bids: error: \S+sub-02_T1w.nii.gz: dangling symlink.* "
                     r"\(2 participants failed: sub-02, sub-03\)$", result.last_line)

    image = out / "sub-01/anat/sub-01_desc-tumsyn_T2w.nii.gz"  # named from the link, not the annex key
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-tumsyn_T2w.json").read_text())
    assert sidecar["Sources"][0] == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert sidecar["Prompt"].startswith("Age: 45; ")
    data = np.asarray(nib.load(str(image)).dataobj)
    assert data.shape == (24, 24, 24) and np.isfinite(data).all() and float(data.std()) > 0
    mask = json.loads((out / "sub-01/anat/sub-01_desc-brain_mask.json").read_text())
    assert mask["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert not list(out.rglob("*SHA256E*"))
    assert not (out / "sub-02" / "anat").exists() and not (out / "sub-03" / "anat").exists()
    with gzip.open(bids / "sub-01/anat/sub-01_T1w.nii.gz") as fh:  # the dataset itself is untouched
        assert len(fh.read()) == total
