"""Other images of the source's session are found on disk."""

from __future__ import annotations

from tumsyn_bids.anat.session import session_images


def test_session_images(tmp_path):
    anat = tmp_path / "sub-01" / "ses-1" / "anat"
    anat.mkdir(parents=True)
    names = ["sub-01_ses-1_run-2_T1w.nii.gz", "sub-01_ses-1_run-1_T1w.nii.gz", "sub-01_ses-1_run-2_T2w.nii.gz",
             "sub-01_ses-1_run-1_T2w.nii.gz", "sub-01_ses-1_ce-gad_T1w.nii.gz", "sub-01_ses-1_T2w.json"]
    for name in names:
        (anat / name).write_bytes(b"")
    source = anat / "sub-01_ses-1_run-2_T1w.nii.gz"
    assert [p.name for p in session_images(source, "T2w")] == ["sub-01_ses-1_run-2_T2w.nii.gz",
                                                                "sub-01_ses-1_run-1_T2w.nii.gz"]
    assert [p.name for p in session_images(source, "T1w")] == ["sub-01_ses-1_run-1_T1w.nii.gz"]
    assert [p.name for p in session_images(source, "T1CE")] == ["sub-01_ses-1_ce-gad_T1w.nii.gz"]
    assert session_images(source, "FLAIR") == []
