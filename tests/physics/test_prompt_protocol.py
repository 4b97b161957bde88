"""A prompt resolves to the full target protocol the physics model renders."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tumsyn_bids.physics.prompt_protocol import infer_sequence, target_acquisition
from tumsyn_bids.prompts import Prompt
from tumsyn_bids.protocols import default_protocol


def _prompt(modality, tr=None, te=None, ti=None, fa=None, field=3.0):
    return Prompt(modality=modality, voxel_size=(1.0, 1.0, 1.0), age=40, sex="F", field_strength=field,
                  vendor="Siemens", tr_ms=tr, te_ms=te, ti_ms=ti, flip_angle=fa)


@pytest.mark.parametrize("modality,tr,te,ti,fa,sequence", [
    ("T2w", 3200.0, 563.0, None, "T2var", "space"),
    ("T1w", 2300.0, 2.3, 900.0, 9.0, "mprage"),
    ("FLAIR", 9000.0, 90.0, 2500.0, 150.0, "ir"),
    ("T1w", 2000.0, 10.0, 800.0, 150.0, "ir"),  # T1-FLAIR (IR spin echo)
    ("T2w", 5000.0, 100.0, None, 90.0, "se"),
    ("T1w", 500.0, 12.0, None, None, "se"),  # 2D SE T1w, no flip angle in the sidecar
    ("T2*w", 700.0, 20.0, None, 20.0, "gre"),
    ("T1w", 20.0, 4.0, None, None, "gre"),  # FLASH: short TR
])
def test_sequence_family_from_timing(modality, tr, te, ti, fa, sequence):
    target = target_acquisition(_prompt(modality, tr, te, ti, fa))
    assert target.protocol.sequence == sequence
    assert target.protocol.tr_ms == tr and target.protocol.te_ms == te


def test_no_timing_gives_the_default_protocol_of_the_field():
    target = target_acquisition(_prompt("PD", field=1.5))
    assert target.contrast == "PDw"
    assert target.protocol == replace(default_protocol("PDw", 1.5), vendor="Siemens")  # the prompt's vendor
    assert "default" in target.note


def test_missing_values_are_filled_and_reported():
    target = target_acquisition(_prompt("FLAIR", tr=10000.0))
    assert target.protocol.sequence == "ir" and target.protocol.ti_ms == default_protocol("FLAIR", 3.0).ti_ms
    assert "te_ms" in target.note and "ti_ms" in target.note


def test_unsimulable_timing_falls_back_with_a_reason():
    target = target_acquisition(_prompt("FLAIR", tr=2000.0, te=90.0, ti=2500.0, fa=150.0))
    assert target.protocol == replace(default_protocol("FLAIR", 3.0), vendor="Siemens")
    assert "not simulable" in target.note and "TI" in target.note


def test_contrast_enhanced_and_swi_keep_their_contrast():
    assert target_acquisition(_prompt("T1CE")).contrast == "T1CE"
    assert target_acquisition(_prompt("SWI")).protocol.sequence == "gre"


def test_infer_sequence_without_timing_is_none():
    assert infer_sequence("T2w", None, None, None, None) is None


def test_source_acquisition_uses_only_what_the_sidecar_gave():
    from tumsyn_bids.physics.prompt_protocol import source_acquisition

    mprage = source_acquisition(_prompt("T1w", 2300.0, 2.3, 900.0, 9.0))
    assert mprage is not None and mprage.protocol.sequence == "mprage"
    se = source_acquisition(_prompt("T2w", 5000.0, 91.0))  # a 2D TSE without flip angle: 90 assumed
    assert se is not None and se.protocol.sequence == "se" and se.protocol.flip_angle == 90.0
    assert source_acquisition(_prompt("T2w", None, 91.0)) is None  # no TR: unknown, never a guess
    assert source_acquisition(_prompt("FLAIR", 9000.0, 110.0)) is None  # FLAIR without its TI
