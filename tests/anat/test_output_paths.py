"""The paths the runner expects are the paths the writers write, for every output kind.

One output (T2w from ``sub-01_ses-1_run-2_acq-fast_T1w``, ``--save-maps``, an MNI copy at res-2, an
acquired T2w for QC) is written by the real writers (``anat/outputs.py``: image, sidecar, mask,
maps, figures, template copy) and the real reportlet drawer; every file they report must be one
of :func:`tumsyn_bids.workflows.jobs.paths_of`'s paths, every path of the kinds written must exist, and
the runner's no-op check must then find the output up to date (a rerun writes nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import fixtures_bids as FX  # tests/ is on pytest's pythonpath
import nibabel as nib
import numpy as np

from tumsyn_bids.anat.outputs import write_synthetic, write_template_copy
from tumsyn_bids.bids.derivatives import sidecar_path
from tumsyn_bids.config import Settings
from tumsyn_bids.planning import build_plan
from tumsyn_bids.reports.reportlets import write_reportlets
from tumsyn_bids.workflows import jobs as job_list

SOURCE = "sub-01/ses-1/anat/sub-01_ses-1_run-2_acq-fast_T1w.nii.gz"
SPACE = "MNI152NLin2009cAsym:res-2"


def _nifti(path: Path, data: np.ndarray, dtype=np.float32) -> Path:
    nib.save(nib.Nifti1Image(data.astype(dtype), np.eye(4)), str(path))
    return path


def test_runner_paths_equal_written_paths(tmp_path):
    bids = FX.make_dataset(tmp_path / "bids", {SOURCE: {"MagneticFieldStrength": 3, "Manufacturer": "Siemens"},
                                               "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz": None})
    out = tmp_path / "out"
    settings = Settings(bids_dir=bids, output_dir=out, work_dir=tmp_path / "work", targets=("T2w",),
                        source=None, save_maps=True, output_spaces=("T1w", SPACE))
    (output,) = [o for o in build_plan(settings, use_database=False).outputs]
    assert output.source_path == bids / SOURCE
    expected = job_list.paths_of(settings, output)

    work = tmp_path / "work"
    work.mkdir()
    source = np.asarray(nib.load(str(bids / SOURCE)).dataobj, dtype=np.float32)
    mask = _nifti(work / "mask.nii.gz", source > source.mean(), np.uint8)
    synth = _nifti(work / "synth.nii.gz", source.max() - source)
    maps = {name: str(_nifti(work / f"{name}.nii.gz", source * (i + 1)))
            for i, name in enumerate(("T1", "T2", "T2star", "PD", "GdR1"))}  # GdR1 has no BIDS name
    synthesis = {"model_name": "stand-in", "sha256": "0" * 64, "device": "cpu", "voxel_size": [1.0, 1.0, 1.0],
                 "maps": maps}
    written = write_synthetic(
        out_dir=out, bids_dir=bids, source_file=output.source_path, synth_file=synth, mask_file=mask,
        target="T2w", prompt=output.prompt.text(), synthesis=synthesis, mask_info={"method": "stand-in"},
        source_metadata=output.source_metadata, conditioning={}, real_registered=synth)
    xfm = work / "xfm.h5"
    xfm.write_bytes(b"transform")
    template = write_template_copy(
        out_dir=out, bids_dir=bids, source_file=output.source_path, target="T2w", space=SPACE, image=synth,
        xfm=xfm, info={}, synth_sidecar=json.loads(sidecar_path(written["image"]).read_text()))
    drawn = write_reportlets(out_dir=out, source_file=output.source_path, target="T2w", written=written,
                             real_registered=synth, synth_file=synth)

    def rel(path: str) -> Path:
        return Path(path).relative_to(out)

    assert rel(written["image"]) == expected.image and rel(written["sidecar"]) == expected.sidecar
    assert rel(written["mask"]) == expected.mask and (out / expected.mask_sidecar).is_file()
    assert {k: rel(v) for k, v in written.items() if k.startswith("map_") and not k.endswith("_sidecar")} == \
        {f"map_{name}": path for name, path in expected.maps.items()}
    assert not any((out / f).exists() for f in expected.figures.values())  # no PNG panels any more
    assert rel(template["image"]) == expected.templates[SPACE] and rel(template["xfm"]) == expected.xfms[SPACE]
    assert {k: rel(v) for k, v in drawn.items()} == expected.reportlets  # mask, source, acquired, maps

    # Nothing was written anywhere else (sidecars of the expected images aside).
    listed = {expected.image, expected.mask, *expected.maps.values(), *expected.templates.values(),
              *expected.xfms.values(), *expected.reportlets.values()}
    listed |= {sidecar_path(p) for p in (expected.image, expected.mask, *expected.maps.values(),
                                         *expected.templates.values())}
    on_disk = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert on_disk - {Path("dataset_description.json"), Path(".bidsignore")} == listed

    # The runner's no-op check reads the same paths: this output is up to date.
    jobs, done = job_list.make_jobs(settings, build_plan(settings, use_database=False), "stand-in", "0" * 64)
    assert jobs == {} and done == [expected.image.as_posix()]
