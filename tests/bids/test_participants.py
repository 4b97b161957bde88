"""participants.tsv / sessions.tsv reading on the situations real datasets produce."""

from __future__ import annotations

import pytest

from tumsyn_bids.bids.participants import (
    Demographics,
    demographics_for,
    parse_age,
    parse_sex,
    read_participants,
    read_sessions,
)


def test_crlf_and_session_age_override(make_ds):
    root = make_ds("full_pair")
    assert b"\r\n" in (root / "participants.tsv").read_bytes()
    participants = read_participants(root)
    assert participants["01"] == Demographics(35.0, "M", "participants.tsv", "participants.tsv")
    sessions = read_sessions(root, "01")
    merged = demographics_for(participants, sessions, "01", "02")
    assert merged.age == pytest.approx(36.6) and merged.age_source == "sub-01_sessions.tsv"
    assert merged.sex == "M" and merged.sex_source == "participants.tsv"
    assert demographics_for(participants, sessions, "01", "99").age == 35.0  # missing session row


def test_bom_and_na(make_ds):
    root = make_ds("bom_na")
    assert (root / "participants.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    participants = read_participants(root)
    assert set(participants) == {"01", "emptyroom"}
    assert participants["01"] == Demographics()


def test_gender_column_and_fractional_age(make_ds):
    demo = read_participants(make_ds("gender_fractional"))["01"]
    assert demo.sex == "F" and demo.age == pytest.approx(21.5086)


def test_levels_decode_lowercase_codes(make_ds):
    participants = read_participants(make_ds("ge_excitation"))
    assert (participants["01"].sex, participants["02"].sex) == ("M", "F")


def test_capitalised_columns_and_missing_row(make_ds):
    root = make_ds("missing_sidecars")
    participants = read_participants(root)
    assert participants["01"].age == 22 and participants["01"].sex == "M" and participants["02"].sex == "F"
    assert "03" not in participants
    assert demographics_for(participants, {}, "03", None) == Demographics()


def test_age_synonym_column(make_ds):
    demo = read_participants(make_ds("age_synonym"))["01"]
    assert demo.age == pytest.approx(29.7) and demo.sex == "F"


def test_missing_file(make_ds):
    root = make_ds("many_variants")
    assert read_participants(root) == {} and read_sessions(root, "01") == {}


def test_numeric_codes_via_levels_and_units(tmp_path, fx):
    fx.write_text(tmp_path / "participants.tsv", "participant_id\tsex\tage\nsub-a\t1\t18\nsub-b\t2\t6\n")
    fx.write_json(tmp_path / "participants.json", {"sex": {"Levels": {"1": "male", "2": "female"}},
                                                    "age": {"Units": "months"}})
    out = read_participants(tmp_path)
    assert (out["a"].sex, out["b"].sex) == ("M", "F")
    assert out["a"].age == pytest.approx(1.5) and out["b"].age == pytest.approx(0.5)


@pytest.mark.parametrize("raw, expected", [("35", 35.0), ("21.5086", 21.5086), ("89+", 89.0), ("n/a", None),
                                           ("", None), ("unknown", None), ("30,5", 30.5), ("-3", None)])
def test_parse_age(raw, expected):
    assert parse_age(raw) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("raw, expected", [("M", "M"), ("f", "F"), ("male", "M"), ("Female", "F"), ("F ", "F"),
                                           ("n/a", None), ("other", None), ("2", None)])
def test_parse_sex(raw, expected):
    assert parse_sex(raw) == expected
