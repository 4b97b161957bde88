"""Built-in dataset checks and the optional bids-validator-deno."""

from __future__ import annotations

import pytest

from tumsyn_bids.bids.validation import (
    BidsValidationError,
    check_description,
    find_validator,
    validate_dataset,
)
from tumsyn_bids.errors import ExitCode


def test_valid_dataset_passes(make_ds, monkeypatch):
    monkeypatch.setenv("TUMSYN_BIDS_VALIDATOR", "builtin")
    assert validate_dataset(make_ds("full_pair")) == []


def test_missing_description(make_ds):
    root = make_ds("inherited")
    (root / "dataset_description.json").unlink()
    with pytest.raises(BidsValidationError) as err:
        validate_dataset(root, external=False)
    assert err.value.exit_code == ExitCode.BIDS_INVALID
    assert str(err.value).startswith(str(root / "dataset_description.json")) and "\n" not in str(err.value)


@pytest.mark.parametrize("content, problem", [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"),
                                               ('{"Name": "x"}', "BIDSVersion")])
def test_bad_description(make_ds, content, problem):
    root = make_ds("inherited")
    (root / "dataset_description.json").write_text(content)
    with pytest.raises(BidsValidationError, match=problem):
        check_description(root)


def test_bad_sidecar_is_named(make_ds):
    root = make_ds("full_pair")
    bad = root / "sub-01/ses-02/anat/sub-01_ses-02_T2w.json"
    bad.write_text('{"RepetitionTime": 3.2,')
    with pytest.raises(BidsValidationError) as err:
        validate_dataset(root, external=False)
    assert str(bad) in str(err.value)
    validate_dataset(root, subjects=("02",), external=False)  # other participants are not read


def test_official_validator_reports_errors(make_ds, monkeypatch):
    monkeypatch.delenv("TUMSYN_BIDS_VALIDATOR", raising=False)
    assert find_validator() is not None, "bids-validator-deno (a dependency of the package) is missing"
    assert validate_dataset(make_ds("inherited")) == []
    root = make_ds("missing_sidecars")  # participants.tsv lacks sub-03: an error for the validator
    with pytest.raises(BidsValidationError, match="PARTICIPANT_ID_MISMATCH"):
        validate_dataset(root)
