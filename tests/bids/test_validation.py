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


# ----------------------------------------------------------------------------- refusals (issue 18)

def _official(monkeypatch):
    monkeypatch.delenv("TUMSYN_BIDS_VALIDATOR", raising=False)
    if find_validator() is None:
        pytest.fail("bids-validator-deno (a dependency of the package) is missing")


def test_refusal_names_file_key_rule_and_the_way_to_skip(make_ds, monkeypatch):
    import json

    _official(monkeypatch)
    root = make_ds("inherited")
    sidecar = root / "acq-MPRAGE_T1w.json"
    meta = json.loads(sidecar.read_text())
    meta["EchoTime"] = "2.01 ms"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(BidsValidationError) as err:
        validate_dataset(root)
    line = str(err.value)
    assert "\n" not in line and err.value.exit_code == ExitCode.BIDS_INVALID
    assert line.startswith(f"{sidecar}: key EchoTime: must be number")
    assert "JSON_SCHEMA_VALIDATION_ERROR" in line and "rule rules.sidecars.mri.MRITimingParameters" in line
    assert line.endswith("--skip-bids-validation runs anyway")
    assert "Field description" not in line and "echo time (TE)" not in line  # the key, not its description


def test_refusal_is_the_last_line_of_the_cli(make_ds, monkeypatch, capsys, tmp_path):
    import json

    from tumsyn_bids.cli.main import run

    _official(monkeypatch)
    root = make_ds("inherited")
    sidecar = root / "acq-MPRAGE_T1w.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "EchoTime": "2 ms"}))
    monkeypatch.chdir(tmp_path)
    code = run([str(root), str(tmp_path / "out"), "participant", "--dry-run"])
    last = [line for line in capsys.readouterr().err.splitlines() if line.strip()][-1]
    assert code == 16
    assert last.startswith(f"tumsyn-bids: error: {sidecar}: key EchoTime: must be number")
    assert last.endswith("--skip-bids-validation runs anyway")
    assert run([str(root), str(tmp_path / "out"), "participant", "--dry-run", "--skip-bids-validation"]) == 0


def test_empty_subject_folder_and_text_in_an_optional_column_only_warn(make_ds, monkeypatch):
    _official(monkeypatch)
    root = make_ds("inherited")
    (root / "sub-03").mkdir()  # not in participants.tsv, nothing inside
    (root / "participants.tsv").write_text(
        "participant_id\tage\tsex\tgroup\nsub-01\tsixty-three\tF\tcontrol\nsub-02\t71\tM\tpatient\n")
    warnings = validate_dataset(root)
    assert len(warnings) == 2, warnings
    mismatch = next(w for w in warnings if "PARTICIPANT_ID_MISMATCH" in w)
    assert mismatch.startswith(f"{root / 'participants.tsv'}: ") and "sub-03" in mismatch
    assert any("TSV_VALUE_INCORRECT_TYPE" in w and "column age" in w for w in warnings)
    # A subject folder with data that participants.tsv does not list is still refused.
    (root / "sub-03" / "anat").mkdir()
    image = (root / "sub-01/anat/sub-01_FLAIR.nii.gz").read_bytes()
    (root / "sub-03" / "anat" / "sub-03_FLAIR.nii.gz").write_bytes(image)
    with pytest.raises(BidsValidationError, match="PARTICIPANT_ID_MISMATCH.*--skip-bids-validation runs anyway"):
        validate_dataset(root)


def test_files_listed_in_bidsignore_only_warn(make_ds, monkeypatch):
    _official(monkeypatch)
    root = make_ds("inherited")
    (root / "notes").mkdir()
    (root / "notes" / "scanner_log.txt").write_text("phantom QA ok\n")
    with pytest.raises(BidsValidationError, match="NOT_INCLUDED"):
        validate_dataset(root)
    (root / ".bidsignore").write_text("notes/\n")
    warnings = validate_dataset(root)
    assert len(warnings) == 1 and "NOT_INCLUDED" in warnings[0] and ".bidsignore" in warnings[0]
