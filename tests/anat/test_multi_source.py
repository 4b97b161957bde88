"""Multi-source synthesis (issue 20): registration QC of further sources, sidecar record, no-op check, report."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.outputs import source_qc_warnings, sources_record
from tumsyn_bids.anat.registration import (
    NMI_THRESHOLD,
    coregister_source,
    kept_sources,
    normalised_mutual_information,
)
from tumsyn_bids.bids.derivatives import is_up_to_date
from tumsyn_bids.reports.participant import source_rows

VOXEL = 4.0


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> dict[str, Path]:
    """A skull-stripped simulated T1w (reference), its brain mask, an aligned T2w and a T2w 20 mm off."""
    from tumsyn_bids.physics.phantoms import mni_phantom
    from tumsyn_bids.physics.simulate import simulate_subject

    root = tmp_path_factory.mktemp("coreg")
    images = simulate_subject(mni_phantom(VOXEL), ["T1w", "T2w"], np.random.default_rng(3), voxel_size=VOXEL,
                              skull_strip=True)
    t1, t2 = images["T1w"], images["T2w"]
    files = {}
    for name, data, shift in (("t1w", t1.data, 0.0), ("t2w", t2.data, 0.0), ("t2w_off", t2.data, 20.0)):
        affine = np.array(t1.affine, dtype=float)
        affine[1, 3] += shift
        files[name] = root / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(files[name]))
    noise = np.random.default_rng(0).random(t1.data.shape).astype(np.float32)
    files["noise"] = root / "noise.nii.gz"
    nib.save(nib.Nifti1Image(noise, t1.affine), str(files["noise"]))
    files["mask"] = root / "mask.nii.gz"
    nib.save(nib.Nifti1Image((t1.data > 0).astype(np.uint8), t1.affine), str(files["mask"]))
    return files


def test_nmi_orders_alignment():
    rng = np.random.default_rng(1)
    a = rng.random((20, 20, 20))
    b = np.exp(a) + 0.01 * rng.random(a.shape)  # a monotone function of a: nearly determined
    mask = np.ones(a.shape, bool)
    assert normalised_mutual_information(a, b, mask) > 1.5
    assert normalised_mutual_information(a, rng.random(a.shape), mask) < 1.01  # independent
    assert normalised_mutual_information(a, np.zeros_like(a), mask) == 1.0  # constant: no information


def test_aligned_source_is_kept_and_resampled_onto_the_reference(session, tmp_path):
    out = tmp_path / "reg.nii.gz"
    qc = coregister_source(session["t1w"], session["mask"], session["t2w"], out)
    assert qc["Kept"] is True and "Warning" not in qc
    assert qc["Value"] >= NMI_THRESHOLD and qc["ShiftMm"] < 2.0 and qc["RotationDeg"] < 2.0
    ref, reg = nib.load(str(session["t1w"])), nib.load(str(out))
    assert reg.shape == ref.shape and np.allclose(reg.affine, ref.affine)


def test_source_20mm_off_is_dropped_with_a_warning(session, tmp_path):
    out = tmp_path / "reg.nii.gz"
    qc = coregister_source(session["t1w"], session["mask"], session["t2w_off"], out)
    assert qc["Kept"] is False
    assert abs(qc["ShiftMm"] - 20.0) < 3.0  # the registration found it; the correction is what fails
    assert qc["Warning"].startswith("misregistered: registration had to move it") and "not used" in qc["Warning"]
    assert out.is_file()


def test_unrelated_image_fails_the_nmi_floor(session, tmp_path):
    qc = coregister_source(session["t1w"], session["mask"], session["noise"], tmp_path / "reg.nii.gz")
    assert qc["Kept"] is False and qc["Value"] < NMI_THRESHOLD and "NMI" in qc["Warning"]


def test_kept_sources_filters_by_qc():
    assert kept_sources(["a.nii.gz", "b.nii.gz"], ["prompt a", ""], [{"Kept": True}, {"Kept": False}]) == [
        ("a.nii.gz", "prompt a")]
    assert kept_sources(["a.nii.gz"], [""], [{"Kept": True}]) == [("a.nii.gz", None)]


EXTRAS = [{"path": "/bids/sub-01/anat/sub-01_T2w.nii.gz", "contrast": "T2w", "prompt": "T2w prompt"},
          {"path": "/bids/sub-01/anat/sub-01_PDw.nii.gz", "contrast": "PDw", "prompt": "PDw prompt"}]
QCS = [{"Metric": "nmi", "Value": 1.08, "Threshold": 1.02, "ShiftMm": 0.3, "RotationDeg": 0.1, "Kept": True},
       {"Metric": "nmi", "Value": 1.03, "Threshold": 1.02, "ShiftMm": 20.1, "RotationDeg": 0.1, "Kept": False,
        "Warning": "misregistered: registration had to move it 20.1 mm"}]


def test_sources_record_says_how_each_source_was_used():
    read_both = {"refinement": {"refined": True, "sources": 2.0}}
    entries = sources_record("/bids", "/bids/sub-01/anat/sub-01_T1w.nii.gz", read_both, EXTRAS, QCS)
    assert [e["Source"] for e in entries] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz",
                                              "bids:raw:sub-01/anat/sub-01_T2w.nii.gz",
                                              "bids:raw:sub-01/anat/sub-01_PDw.nii.gz"]
    assert [e["Used"] for e in entries] == [True, True, False]
    assert entries[2]["Warning"].startswith("misregistered") and entries[2]["RegistrationQC"]["ShiftMm"] == 20.1
    assert entries[1]["RegistrationQC"]["Kept"] is True and entries[1]["SourcePrompt"] == "T2w prompt"
    # refinement off: the kept source was registered but nothing read it
    unread = sources_record("/bids", "/bids/sub-01/anat/sub-01_T1w.nii.gz", {"refinement": {}}, EXTRAS, QCS)
    assert [e["Used"] for e in unread] == [True, False, False] and unread[1]["Role"].startswith("not used")


def test_no_op_check_compares_the_planned_sources(tmp_path):
    image = tmp_path / "sub-01_desc-tumsyn_FLAIR.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(image))
    uris = ["bids:raw:a_T1w.nii.gz", "bids:raw:a_T2w.nii.gz"]
    sidecar = {"Prompt": "p", "ModelName": "m", "ModelWeightsSHA256": "s", "MaskedOutput": False,
               "SynthesisSources": [{"Source": u} for u in uris]}
    image.with_name("sub-01_desc-tumsyn_FLAIR.json").write_text(json.dumps(sidecar))
    same = {"prompt": "p", "model_name": "m", "weights_sha256": "s"}
    assert is_up_to_date(image, sources=uris, **same)
    assert not is_up_to_date(image, sources=uris + ["bids:raw:a_PDw.nii.gz"], **same)  # a source was added
    assert not is_up_to_date(image, sources=uris[:1], **same)  # now single-source
    assert is_up_to_date(image, **same)  # no sources given: not compared (maps, template copies)
    warnings = source_qc_warnings([image.with_name("sub-01_desc-tumsyn_FLAIR.json")])
    assert warnings == []


def test_report_rows_show_each_source_and_its_qc():
    entries = sources_record("/bids", "/bids/sub-01/anat/sub-01_T1w.nii.gz",
                             {"refinement": {"refined": True, "sources": 2.0}}, EXTRAS, QCS)
    html = source_rows(entries)
    assert html.count("<tr>") == 4  # header + one row per source
    assert html.count('<span class="ok">kept</span>') == 1 and html.count('<span class="fail">dropped</span>') == 1
    assert "NMI 1.080 (threshold 1.02), correction 0.3 mm" in html and "misregistered" in html


def test_coreg_pyramid_levels_follow_the_voxel_size():
    from tumsyn_bids.anat.registration import coreg_pyramid

    assert coreg_pyramid(1.0) == ((4, 2, 1), (2.0, 1.0, 0.0), (100, 50, 10))  # ~4 mm, ~2 mm, then a polish
    assert coreg_pyramid(4.0) == ((2, 1), (1.0, 0.0), (200, 100))  # coarse images: two levels
    shrink, sigmas, iterations = coreg_pyramid(0.7)
    assert shrink[-1] == 1 and len(shrink) == len(sigmas) == len(iterations)
