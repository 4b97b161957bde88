"""pybids discovery: anat-only index, participant/session filters, filter file, inheritance, database."""

from __future__ import annotations

import pytest

from tumsyn_bids.bids.layout import build_layout, check_participants, discover, find_images
from tumsyn_bids.errors import ExitCode, TumsynError


def test_index_is_limited_to_selected_anat(make_ds, fx):
    root = make_ds("many_variants")
    fx.write_nifti(root / "sub-01/func/sub-01_task-rest_bold.nii.gz")
    fx.write_nifti(root / "derivatives/x/sub-01/anat/sub-01_desc-x_T1w.nii.gz")
    layout = build_layout(root, subjects=("01",))
    files = [f.relpath for f in layout.get(extension=[".nii", ".nii.gz"])]
    assert files and all(p.startswith("sub-01/anat/") for p in files)


def test_session_filter(make_ds):
    root = make_ds("full_pair")
    layout = build_layout(root, sessions=("02",))
    records = discover(root, layout, subjects=("01",), sessions=("02",))
    assert [(r.subject, r.session) for r in records] == [("01", "02")]
    assert {i.suffix for i in records[0].images} == {"T1w", "T2w"}
    assert records[0].demographics.age == pytest.approx(36.6)


def test_inherited_metadata_is_merged(make_ds):
    root = make_ds("inherited")
    records = discover(root, build_layout(root), subjects=("01", "02"))
    t1 = [i for i in records[1].images if i.suffix == "T1w"][0]
    assert t1.metadata["RepetitionTime"] == 2.0 and t1.metadata["Manufacturer"] == "SIEMENS"
    assert t1.entities["acquisition"] == "MPRAGE"
    flair = [i for i in records[1].images if i.suffix == "FLAIR"][0]
    assert flair.metadata["EchoTime"] == 0.395 and "FlipAngle" not in flair.metadata


def test_per_file_sidecar_overrides_top_level(make_ds, fx):
    root = make_ds("bom_na")
    image = discover(root, build_layout(root), subjects=("01",))[0].images[0]
    assert image.metadata["RepetitionTime"] == 2.0 and "AnatomicalLandmarkCoordinates" in image.metadata


def test_filter_file_applies_to_every_query(make_ds):
    root = make_ds("many_variants")
    layout = build_layout(root)
    filters = {"anat": {"acquisition": "PMCoff"}, "t1w": {"reconstruction": "wore"}}
    names = sorted(i.path.name for i in find_images(layout, "01", None, filters))
    assert names == ["sub-01_acq-PMCoff_FLAIR.nii.gz", "sub-01_acq-PMCoff_T2starw.nii.gz"]
    none_filter = {"t1w": {"run": None}}  # null = entity must be absent: every T1w has a run
    assert not [i for i in find_images(layout, "01", None, none_filter) if i.suffix == "T1w"]


def test_unknown_entity_in_filter_is_usage_error(make_ds):
    root = make_ds("inherited")
    with pytest.raises(TumsynError) as err:
        find_images(build_layout(root), "01", None, {"t1w": {"colour": "blue"}})
    assert err.value.exit_code == ExitCode.USAGE


def test_unknown_participants_are_listed(make_ds):
    root = make_ds("inherited")
    assert check_participants(root, ()) == ("01", "02")
    with pytest.raises(TumsynError) as err:
        check_participants(root, ("01", "07", "xx"))
    assert "sub-07 sub-xx" in str(err.value) and err.value.exit_code == ExitCode.USAGE


def test_database_is_written_and_reused(make_ds, tmp_path):
    root = make_ds("inherited")
    db = tmp_path / "db"
    first = build_layout(root, database_path=db)
    assert any(db.iterdir())
    second = build_layout(root, database_path=db)
    assert sorted(first.get_subjects()) == sorted(second.get_subjects()) == ["01", "02"]


def test_invalid_sidecar_json_is_a_data_error(make_ds):
    root = make_ds("inherited")
    (root / "FLAIR.json").write_text("{oops")
    with pytest.raises(TumsynError) as err:
        discover(root, build_layout(root), subjects=("01",))
    assert err.value.exit_code == ExitCode.DATA and "FLAIR.json" in str(err.value)
