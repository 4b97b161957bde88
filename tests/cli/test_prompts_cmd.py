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


def test_prompts_lists_every_source_of_a_multi_source_output(make_ds):
    ds = make_ds("many_variants")
    result = _invoke(ds, "--participant-label", "02", "--target", "PDw", "--sources", "auto")
    assert result.exit_code == 0, result.output
    assert "sub-02  PDw <- sub-02/anat/sub-02_acq-PMCoff_FLAIR.nii.gz" in result.output
    assert "  sources: 2 (the first defines the output grid and the brain mask)" in result.output
    assert "    1. sub-02_acq-PMCoff_FLAIR.nii.gz (FLAIR; reference, output grid): Age: " in result.output
    assert ("    2. sub-02_acq-PMCoff_T2starw.nii.gz (T2starw; registered rigidly to the reference): Age: "
            in result.output)
    single = _invoke(ds, "--participant-label", "02", "--target", "PDw", "--sources", "single")
    assert single.exit_code == 0 and "sources:" not in single.output
    default = _invoke(ds, "--participant-label", "02", "--target", "PDw")
    assert default.exit_code == 0 and "sources:" not in default.output
    picked = _invoke(ds, "--participant-label", "01", "--target", "PDw", "--source", "T2starw", "--source", "T2w",
                     "--json")
    out = json.loads(picked.output)["outputs"][0]
    assert out["source_path"].endswith("sub-01_acq-tsePMCoff_rec-wre_T2w.nii.gz")  # T2w ranks before T2starw
    assert [e["contrast"] for e in out["extra_sources"]] == ["T2starw"]
    assert out["extra_sources"][0]["prompt"].startswith("Age: ")
    bad = _invoke(ds, "--sources", "every")
    assert bad.exit_code == 64 and "--sources every" in bad.output
