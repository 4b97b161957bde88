"""``tumsyn prompts BIDS_DIR``: the plan as text and as JSON, without running anything."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tumsyn_bids.cli import tools


def _invoke(*args):
    tools._register()
    return CliRunner().invoke(tools.app, ["prompts", *[str(a) for a in args]])


def test_prompts_text_and_json(make_ds):
    ds = make_ds("ge_excitation")
    result = _invoke(ds, "--participant-label", "02", "--target", "T2w,FLAIR")
    assert result.exit_code == 0, result.output
    assert "sub-02  T2w <- sub-02/anat/sub-02_T1w.nii.gz  voxel 1x1x1.2 mm" in result.output
    assert ("prompt:  Age: 30; Gender: F; Scanner: 3.0 GE; Modality: FLAIR; Voxel size: (1.0, 1.0, 1.2); "
            "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (9000.0, 90.0, 2500.0, 150.0)") in result.output
    assert "excitation TR" in result.output  # notes are shown
    assert not (ds / "derivatives").exists()  # nothing is written
    result = _invoke(ds, "--json", "--voxel", "1,1,1", "--target", "PDw")
    plan = json.loads(result.output)
    assert [o["subject"] for o in plan["outputs"]] == ["01", "02"]
    assert plan["outputs"][0]["voxel_size"] == [1.0, 1.0, 1.0] and "Modality: PD;" in plan["outputs"][0]["prompt"]


def test_prompts_reports_skips_and_errors(make_ds):
    ds = make_ds("full_pair")
    result = _invoke(ds, "--target", "T2w", "--skip-existing")
    assert result.exit_code == 0 and "sub-01_ses-01  skipped T2w: already present (--skip-existing)" in result.output
    result = _invoke(ds, "--participant-label", "05")
    assert result.exit_code == 64 and "sub-05" in result.output


def test_prompts_warns_about_implausible_and_missing_sidecars(make_ds, fx, tmp_path):
    ds = make_ds("missing_sidecars")
    result = _invoke(ds, "--participant-label", "01")
    assert result.exit_code == 0, result.output
    assert f"tumsyn prompts: warning: {ds}/sub-01/anat/sub-01_T1w.nii.gz: no sidecar with acquisition" in result.output
    ms = fx.make_dataset(tmp_path / "ms",
                         {"sub-01/anat/sub-01_T1w.nii.gz": dict(fx.EYETRACKING_T1W, RepetitionTime=2300)})
    result = _invoke(ms)
    assert "sub-01_T1w.json: RepetitionTime 2300 is outside the plausible range 0.001-30 s" in result.output
    assert "(milliseconds instead of seconds?); treated as unknown (None in the prompt)" in result.output
