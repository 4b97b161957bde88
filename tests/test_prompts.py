"""Prompt text, parsing, vendor normalisation and sidecar reading (pure functions)."""

from __future__ import annotations

import pytest

from tumsyn_bids.prompts import (
    T2VAR,
    Prompt,
    acquisition_from_sidecar,
    normalise_vendor,
    parse_flip_angle,
    parse_prompt,
    seconds_to_ms,
)

PUBLISHED = (
    "Age: 16; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (0.8, 0.8, 0.8); "
    "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)"
)


def test_published_example_round_trips_exactly():
    prompt = parse_prompt(PUBLISHED)
    assert prompt == Prompt("T2w", (0.8, 0.8, 0.8), 16, "F", 3.0, "Siemens", 3200.0, 563.0, None, T2VAR)
    assert prompt.text() == PUBLISHED


@pytest.mark.parametrize(
    "prompt",
    [
        Prompt("T1w", (1.0, 1.0, 1.2), None, None, None, None, None, None, None, None),
        Prompt("FLAIR", (0.5, 0.5, 3.0), 71, "M", 1.5, "GE", 9000.0, 110.0, 2200.0, 150.0),
        Prompt("PD", (1.0, 1.0, 1.0), 30, "F", 3.0, "Philips", 3000.0, 12.0, None, 90.0),
    ],
)
def test_round_trip(prompt):
    text = prompt.text()
    assert "  (" in text  # the two spaces before the parameter tuple
    assert parse_prompt(text) == prompt


def test_one_decimal_and_age_in_completed_years():
    text = Prompt("T2w", (0.83333, 1, 1), 21.5086, "F", 3, "Siemens", 3200, 563.04, None, 120).text()
    assert "Age: 21;" in text and "Voxel size: (0.8, 1.0, 1.0)" in text and "(3200.0, 563.0, None, 120.0)" in text


def test_parse_rejects_other_text():
    with pytest.raises(ValueError):
        parse_prompt("Age: 16; Gender: F")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("SIEMENS", "Siemens"), ("Siemens Healthineers", "Siemens"), ("Siemens Healthcare GmbH", "Siemens"),
        ("GE MEDICAL SYSTEMS", "GE"), ("GE", "GE"), ("General Electric", "GE"),
        ("Philips Medical Systems", "Philips"), ("Philips Healthcare", "Philips"), ("Philips", "Philips"),
        ("TOSHIBA_MEC", "Toshiba"), ("Canon Medical Systems", "Canon"), ("UIH", "UIH"),
        ("Acme  Scanners", "Acme Scanners"), ("", None), ("n/a", None), (None, None),
    ],
)
def test_normalise_vendor(raw, expected):
    assert normalise_vendor(raw) == expected


def test_seconds_to_ms():
    assert seconds_to_ms(2.3) == pytest.approx(2300.0)
    assert seconds_to_ms([0.00228, 0.005]) == pytest.approx(2.28)
    assert seconds_to_ms("n/a") is None and seconds_to_ms(0) is None and seconds_to_ms(None) is None


def test_siemens_mprage_sidecar_in_ms():
    acq = acquisition_from_sidecar({"RepetitionTime": 2.3, "EchoTime": 0.00228, "InversionTime": 0.9,
                                    "FlipAngle": 9, "MagneticFieldStrength": 3, "Manufacturer": "SIEMENS"})
    assert (acq.tr_ms, acq.te_ms, acq.ti_ms, acq.flip_angle) == pytest.approx((2300.0, 2.28, 900.0, 9.0))
    assert acq.field_strength == 3.0 and acq.vendor == "Siemens" and acq.notes == ()


def test_ge_excitation_tr_becomes_none_with_note():
    acq = acquisition_from_sidecar({"RepetitionTime": 0.006952, "EchoTime": 0.00292, "InversionTime": 1.06,
                                    "FlipAngle": 8, "Manufacturer": "GE MEDICAL SYSTEMS"})
    assert acq.tr_ms is None and acq.ti_ms == pytest.approx(1060.0) and acq.vendor == "GE"
    assert any("excitation TR" in n for n in acq.notes)


def test_short_tr_without_preparation_is_kept():
    acq = acquisition_from_sidecar({"RepetitionTime": 0.028, "EchoTime": 0.02, "FlipAngle": 15,
                                    "Manufacturer": "GE MEDICAL SYSTEMS"})
    assert acq.tr_ms == pytest.approx(28.0) and acq.notes == ()


def test_philips_excitation_only():
    prepared = acquisition_from_sidecar({"RepetitionTimeExcitation": 0.006953, "InversionTime": 0.865,
                                         "Manufacturer": "Philips Medical Systems"})
    assert prepared.tr_ms is None and any("RepetitionTimeExcitation" in n for n in prepared.notes)
    gre = acquisition_from_sidecar({"RepetitionTimeExcitation": 0.025, "Manufacturer": "Philips"})
    assert gre.tr_ms == pytest.approx(25.0) and gre.notes
    mp2rage = acquisition_from_sidecar({"RepetitionTimeExcitation": 0.007, "RepetitionTimePreparation": 5.0,
                                        "InversionTime": [0.9, 2.75]})
    assert mp2rage.tr_ms == pytest.approx(5000.0) and mp2rage.ti_ms == pytest.approx(900.0)


def test_space_variable_flip_angle():
    acq = acquisition_from_sidecar({"RepetitionTime": 3.2, "EchoTime": 0.564, "FlipAngle": 120,
                                    "SequenceName": "*spc_314ns", "MRAcquisitionType": "3D"})
    assert acq.flip_angle == T2VAR and any(T2VAR in n for n in acq.notes)
    tse2d = acquisition_from_sidecar({"FlipAngle": 150, "MRAcquisitionType": "2D", "ScanningSequence": "SE"})
    assert tse2d.flip_angle == 150.0


def test_parse_flip_angle():
    assert parse_flip_angle("t2var") == T2VAR and parse_flip_angle("9") == 9.0 and parse_flip_angle(None) is None
    with pytest.raises(ValueError):
        parse_flip_angle("steep")
