"""Source selection and prompts on every fixture situation, asserted field by field."""

from __future__ import annotations

import fixtures_bids as FX  # tests/ is on pytest's pythonpath
import pytest

from tumsyn_bids.bids.validation import check_nifti
from tumsyn_bids.cli.options import parse_source
from tumsyn_bids.config import Settings
from tumsyn_bids.errors import DataError
from tumsyn_bids.planning import Plan, build_plan
from tumsyn_bids.prompts import T2VAR, parse_prompt


def plan_for(tmp_path, name, **overrides) -> Plan:
    root = FX.BUILDERS[name](tmp_path / name)
    if isinstance(overrides.get("source"), str):  # --source as the CLI parses it
        overrides["source"] = parse_source(overrides["source"])
    settings = Settings(bids_dir=root, output_dir=tmp_path / "out", work_dir=tmp_path / "work", **overrides)
    return build_plan(settings, use_database=False)


def fields(prompt):
    return (prompt.age, prompt.sex, prompt.field_strength, prompt.vendor, prompt.modality, prompt.voxel_size,
            prompt.tr_ms, prompt.te_ms, prompt.ti_ms, prompt.flip_angle)


def test_full_pair_with_sessions(tmp_path):
    plan = plan_for(tmp_path, "full_pair", targets=("FLAIR",))
    assert [(o.subject, o.session) for o in plan.outputs] == [("01", "01"), ("01", "02")]
    first, second = plan.outputs
    assert first.source_path.name == "sub-01_ses-01_T1w.nii.gz" and first.source_contrast == "T1w"
    assert fields(first.prompt) == (35, "M", 3.0, "Siemens", "FLAIR", (0.8, 0.8, 0.8), 9000.0, 90.0, 2500.0, 150.0)
    assert second.prompt.age == 36  # sessions.tsv 36.6 overrides participants.tsv 35; completed years
    assert first.demographics["age_source"] == "sub-01_sessions.tsv"
    src = first.source_prompt
    assert (src.tr_ms, src.te_ms, src.ti_ms, src.flip_angle) == pytest.approx((2300.0, 2.28, 900.0, 9.0))


def test_full_pair_skip_existing(tmp_path):
    plan = plan_for(tmp_path, "full_pair", targets=("T2w", "PDw"), skip_existing=True)
    assert [o.target for o in plan.outputs] == ["PDw", "PDw"]
    assert plan.skipped == {"sub-01_ses-01": ["T2w: already present (--skip-existing)"],
                            "sub-01_ses-02": ["T2w: already present (--skip-existing)"]}
    assert plan.sessions_without_source == []


def test_inherited_sidecars(tmp_path):
    plan = plan_for(tmp_path, "inherited", targets=("T2w",))
    out = plan.outputs[1]
    assert out.source_path.name == "sub-02_acq-MPRAGE_T1w.nii.gz"
    assert fields(out.prompt) == (71, "M", 3.0, "Siemens", "T2w", (1.0, 1.0, 1.0), 3200.0, 563.0, None, T2VAR)
    assert out.source_metadata["RepetitionTime"] == 2.0  # from the top-level acq-MPRAGE_T1w.json
    assert out.source_prompt.tr_ms == pytest.approx(2000.0) and out.source_prompt.ti_ms is None


def test_ge_excitation_tr(tmp_path):
    out = plan_for(tmp_path, "ge_excitation", targets=("T1w",)).outputs[0]
    assert fields(out.prompt) == (24, "M", 3.0, "GE", "T1w", (1.0, 1.0, 1.2), 2300.0, 2.3, 900.0, 9.0)
    assert out.source_prompt.tr_ms is None and out.source_prompt.ti_ms == pytest.approx(1060.0)
    assert any("excitation TR" in note for note in out.notes)


def test_philips_repetition_time_excitation_only(tmp_path):
    out = plan_for(tmp_path, "philips_excitation", targets=("T2w",)).outputs[0]
    assert out.subject == "S01"
    assert fields(out.prompt) == (27, "F", 3.0, "Philips", "T2w", (1.0, 1.0, 1.0), 3200.0, 563.0, None, T2VAR)
    assert out.source_prompt.tr_ms is None and out.source_prompt.te_ms == pytest.approx(3.13)
    assert any("RepetitionTimeExcitation" in note for note in out.notes)


def test_gender_column_fractional_age_sessions_nii(tmp_path):
    plan = plan_for(tmp_path, "gender_fractional", targets=("T2w",), voxel_size=(1.0, 1.0, 1.0))
    assert [o.session for o in plan.outputs] == ["baseline", "rescan"]
    out = plan.outputs[0]
    assert out.source_path.suffix == ".nii"
    assert fields(out.prompt) == (21, "F", 3.0, "Siemens", "T2w", (1.0, 1.0, 1.0), 3200.0, 563.0, None, T2VAR)
    assert out.demographics["age"] == pytest.approx(21.5086)


def test_bom_and_na(tmp_path):
    out = plan_for(tmp_path, "bom_na", targets=("PDw",)).outputs[0]
    assert fields(out.prompt) == (None, None, 3.0, "Siemens", "PD", (1.0, 1.0, 1.0), 3000.0, 12.0, None, 90.0)
    assert out.prompt.text().startswith("Age: None; Gender: None; Scanner: 3.0 Siemens; Modality: PD;")


def test_missing_sidecars_and_missing_row(tmp_path):
    plan = plan_for(tmp_path, "missing_sidecars", targets=("T2starw",))
    assert [o.subject for o in plan.outputs] == ["01", "02", "03"]
    out1, out3 = plan.outputs[0], plan.outputs[2]
    assert fields(out1.prompt) == (22, "M", None, None, "T2*w", (1.0, 1.0, 1.0), 700.0, 20.0, None, 20.0)
    assert out3.prompt.age is None and out3.prompt.sex is None
    assert "field strength unknown (no MagneticFieldStrength)" in out1.reasons


def test_many_variants_selection_rule(tmp_path):
    plan = plan_for(tmp_path, "many_variants", targets=("T2w", "T1w"))
    by_key = {(o.subject, o.target): o for o in plan.outputs}
    # sub-01: three T1w: lowest run first, then name (NOPMC_rec-wre_run-1 < PMCon_rec-wre_run-1)
    assert by_key[("01", "T2w")].source_path.name == "sub-01_acq-mprageNOPMC_rec-wre_run-1_T1w.nii.gz"
    assert by_key[("01", "T2w")].source_entities["run"] == 1
    # sub-02 (FLAIR, T2starw): nearest to T2w is T2starw; nearest to T1w is FLAIR
    assert by_key[("02", "T2w")].source_contrast == "T2starw"
    assert by_key[("02", "T1w")].source_contrast == "FLAIR"
    assert "no T1w; FLAIR is the contrast nearest to T1w" in by_key[("02", "T1w")].reasons
    assert by_key[("02", "T1w")].prompt.age is None  # no participants.tsv


def test_source_override(tmp_path):
    plan = plan_for(tmp_path, "many_variants", targets=("FLAIR",), source="acq-tsePMCon_T2w",
                    participant_labels=("01", "02"))
    assert [o.source_path.name for o in plan.outputs] == ["sub-01_acq-tsePMCon_rec-wre_T2w.nii.gz"]
    assert plan.skipped["sub-02"] == ["FLAIR: no image matches --source acq-tsePMCon_T2w"]
    assert plan.sessions_without_source == ["sub-02"]
    json_source = plan_for(tmp_path / "j", "many_variants", targets=("FLAIR",),
                           source='{"suffix": "T2starw"}', participant_labels=("03",))
    assert json_source.outputs[0].source_contrast == "T2starw"


def test_cli_overrides_take_precedence(tmp_path):
    out = plan_for(tmp_path, "ge_excitation", targets=("FLAIR",), participant_labels=("02",), tr=8000.0,
                   te=120.0, ti=2400.0, fa="T2var", field_strength=1.5, vendor="philips medical systems",
                   voxel_size=(0.5, 0.5, 2.0)).outputs[0]
    assert fields(out.prompt) == (30, "F", 1.5, "Philips", "FLAIR", (0.5, 0.5, 2.0), 8000.0, 120.0, 2400.0, T2VAR)


def test_field_strength_picks_protocol_row(tmp_path):
    out = plan_for(tmp_path, "inherited", targets=("T2w",), field_strength=1.5).outputs[0]
    assert (out.prompt.tr_ms, out.prompt.te_ms, out.prompt.flip_angle) == (5725.0, 100.0, 90.0)


def test_truncated_source_falls_back_and_is_reported(tmp_path):
    root = FX.BUILDERS["many_variants"](tmp_path / "ds")
    best = root / "sub-01/anat/sub-01_acq-mprageNOPMC_rec-wre_run-1_T1w.nii.gz"
    best.write_bytes(best.read_bytes()[:200])
    settings = Settings(bids_dir=root, output_dir=tmp_path / "o", participant_labels=("01",), targets=("T2w",))
    plan = build_plan(settings, use_database=False)
    assert plan.outputs[0].source_path.name == "sub-01_acq-mpragePMCon_rec-wre_run-1_T1w.nii.gz"
    assert plan.unreadable and best.name in plan.unreadable[0]
    assert "passed over unreadable" in plan.outputs[0].reasons[0]


def test_check_nifti(tmp_path):
    good = FX.write_nifti(tmp_path / "a.nii.gz", zooms=(0.9, 0.9, 1.1))
    assert check_nifti(good) == ((12, 12, 12), (0.9, 0.9, 1.1))
    raw = FX.write_nifti(tmp_path / "b.nii")
    raw.write_bytes(raw.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        check_nifti(raw)
    (tmp_path / "c.nii.gz").write_bytes(b"not an image")
    with pytest.raises(DataError, match="not a readable NIfTI"):
        check_nifti(tmp_path / "c.nii.gz")
    with pytest.raises(DataError, match="4D image with 3 volumes"):
        check_nifti(FX.write_nifti(tmp_path / "d.nii.gz", shape=(12, 12, 12, 3)))


def test_plan_json_round_trip(tmp_path):
    plan = plan_for(tmp_path, "ge_excitation", targets=("T2w", "FLAIR"))
    again = Plan.from_json(plan.to_json())
    assert again.outputs == plan.outputs and again.skipped == plan.skipped
    assert parse_prompt(again.outputs[0].prompt.text()) == plan.outputs[0].prompt


# --- multi-source synthesis (issue 20) ------------------------------------------------------------


def _sources(out) -> list[str]:
    return [out.source_path.name] + [e.path.name for e in out.extra_sources]


def test_sources_auto_uses_every_other_contrast(tmp_path):
    plan = plan_for(tmp_path, "many_variants", targets=("PDw",), sources="auto")
    by_subject = {o.subject: o for o in plan.outputs}
    one = by_subject["01"]
    # reference by the existing rule; then the best image of every other contrast, nearest to PDw first
    assert _sources(one) == ["sub-01_acq-mprageNOPMC_rec-wre_run-1_T1w.nii.gz", "sub-01_acq-PMCoff_FLAIR.nii.gz",
                             "sub-01_acq-tsePMCoff_rec-wre_T2w.nii.gz", "sub-01_acq-PMCoff_T2starw.nii.gz"]
    assert [e.contrast for e in one.extra_sources] == ["FLAIR", "T2w", "T2starw"]
    flair = one.extra_sources[0].prompt
    assert flair.modality == "FLAIR" and flair.ti_ms == pytest.approx(1800.0)  # its own source prompt
    assert any(r.startswith("4 sources (--sources auto)") for r in one.reasons)
    assert _sources(by_subject["02"]) == ["sub-02_acq-PMCoff_FLAIR.nii.gz", "sub-02_acq-PMCoff_T2starw.nii.gz"]
    # one usable contrast besides the target: exactly today's single-source plan
    assert _sources(by_subject["03"]) == ["sub-03_acq-PMCoff_T2starw.nii.gz"]
    assert not any("sources" in r for r in by_subject["03"].reasons)


def test_target_contrast_is_never_a_further_source(tmp_path):
    plan = plan_for(tmp_path, "many_variants", targets=("FLAIR",), sources="auto")
    one = next(o for o in plan.outputs if o.subject == "01")
    assert "FLAIR" not in [e.contrast for e in one.extra_sources]
    assert [e.contrast for e in one.extra_sources] == ["T2w", "T2starw"]


def test_sources_single_is_the_default_and_one_source_keeps_one(tmp_path):
    auto = plan_for(tmp_path / "a", "many_variants", targets=("PDw",), sources="auto")
    single = plan_for(tmp_path / "s", "many_variants", targets=("PDw",), sources="single")
    assert all(o.extra_sources == () for o in single.outputs)
    # apart from the further sources, single-source planning is unchanged
    assert [(o.subject, o.source_path.name, o.prompt) for o in single.outputs] == [
        (o.subject, o.source_path.name, o.prompt) for o in auto.outputs]
    once = plan_for(tmp_path / "o", "many_variants", targets=("PDw",), source="T2w")
    assert [_sources(o) for o in once.outputs] == [["sub-01_acq-tsePMCoff_rec-wre_T2w.nii.gz"]]
    default = plan_for(tmp_path / "d", "many_variants", targets=("PDw",))  # measured: no gain yet (README)
    assert all(o.extra_sources == () for o in default.outputs)


def test_repeated_source_picks_one_image_per_option(tmp_path):
    plan = plan_for(tmp_path, "many_variants", targets=("PDw",), source=parse_source(["T2w", "FLAIR"]))
    by_subject = {o.subject: o for o in plan.outputs}
    # the reference among the picks is the first by the ranking (FLAIR before T2w for PDw), not the first option
    assert _sources(by_subject["01"]) == ["sub-01_acq-PMCoff_FLAIR.nii.gz", "sub-01_acq-tsePMCoff_rec-wre_T2w.nii.gz"]
    assert any("--source repeated" in r for r in by_subject["01"].reasons)
    assert _sources(by_subject["02"]) == ["sub-02_acq-PMCoff_FLAIR.nii.gz"]
    assert "--source T2w: no usable image matches (not used)" in by_subject["02"].reasons
    assert "03" not in by_subject and plan.skipped["sub-03"] == ["PDw: no image matches --source T2w FLAIR"]


def test_multi_source_plan_round_trips_and_prints(tmp_path):
    from tumsyn_bids.planning import format_plan

    plan = plan_for(tmp_path, "many_variants", targets=("PDw",), sources="auto")
    again = Plan.from_json(plan.to_json())
    assert again.outputs == plan.outputs
    text = format_plan(plan, tmp_path / "many_variants")
    assert "  sources: 4 (the first defines the output grid and the brain mask)" in text
    assert "    1. sub-01_acq-mprageNOPMC_rec-wre_run-1_T1w.nii.gz (T1w; reference, output grid): " in text
    assert "    2. sub-01_acq-PMCoff_FLAIR.nii.gz (FLAIR; registered rigidly to the reference): " in text
    single = plan_for(tmp_path / "s", "many_variants", targets=("PDw",), sources="single")
    assert "sources:" not in format_plan(single)
