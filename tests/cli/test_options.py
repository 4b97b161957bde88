"""Option parsing helpers and the Settings TOML round trip (no dataset needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tumsyn_bids.cli import options as opt
from tumsyn_bids.config import Settings
from tumsyn_bids.errors import ExitCode, UsageError


def test_expand_multi_value():
    argv = ["ds", "out", "participant", "--participant-label", "01", "02", "--voxel", "1", "1", "1", "-v",
            "--target", "T2w", "FLAIR", "--target=PDw", "--source", "T1w", "--", "--target"]
    assert opt.expand_multi_value(argv) == [
        "ds", "out", "participant", "--participant-label", "01", "--participant-label", "02",
        "--voxel", "1", "--voxel", "1", "--voxel", "1", "-v", "--target", "T2w", "--target", "FLAIR",
        "--target=PDw", "--source", "T1w", "--", "--target"]
    assert opt.expand_multi_value(["--voxel", "1", "2", "3", "4"]) == [
        "--voxel", "1", "--voxel", "2", "--voxel", "3", "4"]
    assert opt.expand_multi_value(["--target"]) == ["--target"]


@pytest.mark.parametrize("value, mb", [("4000", 4000), ("4000M", 4000), ("8G", 8192), ("8gb", 8192),
                                       ("1.5G", 1536), ("1T", 1048576), (" 512 MB ", 512)])
def test_parse_mem(value, mb):
    assert opt.parse_mem(value) == mb


@pytest.mark.parametrize("value", ["8X", "", "G", "-1G", "0"])
def test_parse_mem_rejects(value):
    with pytest.raises(UsageError) as err:
        opt.parse_mem(value)
    assert err.value.exit_code == ExitCode.USAGE and "--mem" in str(err.value)


def test_strip_labels():
    assert opt.strip_labels(["sub-01", "02", "01", "03,sub-04"], "sub-") == ("01", "02", "03", "04")
    assert opt.strip_labels(None, "ses-") == ()
    with pytest.raises(UsageError):
        opt.strip_labels(["sub-0_1"], "sub-")


def test_parse_voxel():
    assert opt.parse_voxel(["0.8"]) == (0.8, 0.8, 0.8)
    assert opt.parse_voxel(["1", "1", "3"]) == (1.0, 1.0, 3.0)
    assert opt.parse_voxel(None) is None
    for bad in (["0", "1", "1"], ["-1", "1", "1"], ["nan", "1", "1"], ["1", "1"], ["x", "1", "1"], ["25"]):
        with pytest.raises(UsageError):
            opt.parse_voxel(bad)


def test_parse_source():
    assert opt.parse_source("T2w").filters == {"suffix": "T2w"}
    assert opt.parse_source("acq-mprage_run-2_T1w").filters == {"acquisition": "mprage", "run": "2", "suffix": "T1w"}
    assert opt.parse_source('{"acq": "mprage", "suffix": "T1w"}').filters == {"acquisition": "mprage", "suffix": "T1w"}
    assert str(opt.parse_source(" acq-mprage_T1w ")) == "acq-mprage_T1w"  # the spec as typed, for messages
    assert opt.parse_source(None) is None
    for bad in ("acq_T1w", "{bad", "[]"):
        with pytest.raises(UsageError):
            opt.parse_source(bad)


def test_output_spaces():
    assert opt.parse_output_spaces(None) == ("T1w",)
    assert opt.parse_output_spaces(["MNI152NLin2009cAsym:res-2", "T1w", "T1w"]) == (
        "MNI152NLin2009cAsym:res-2", "T1w")
    for bad in (["fsaverage"], ["MNI152NLin2009cAsym:res-x"], ["T1w:res-1"]):
        with pytest.raises(UsageError):
            opt.parse_output_spaces(bad)


def test_filter_file(tmp_path):
    good = tmp_path / "f.json"
    good.write_text('{"T1w": {"acq": "mprage", "run": null}, "flair": {"acquisition": "*"}}')
    assert opt.load_filter_file(good) == {"t1w": {"acquisition": "mprage", "run": None},
                                          "flair": {"acquisition": "*"}}
    with pytest.raises(UsageError, match="cannot read"):
        opt.load_filter_file(tmp_path / "missing.json")


def test_plugin_file(tmp_path):
    good = tmp_path / "p.yml"
    good.write_text("plugin: MultiProc\nplugin_args: {n_procs: 4, n_gpu_procs: 1}\n")
    assert opt.load_plugin_file(good)["plugin_args"] == {"n_procs": 4, "n_gpu_procs": 1}
    for text in ("plugin_args: {}\n", "plugin: [unclosed\n", "plugin: Linear\nplugin_args: 3\n"):
        good.write_text(text)
        with pytest.raises(UsageError):
            opt.load_plugin_file(good)


def test_settings_toml_round_trip(tmp_path):
    settings = Settings(
        bids_dir=Path("/data/bids"), output_dir=Path("/data/out"), work_dir=tmp_path,
        participant_labels=("01", "02"), bids_filters={"t1w": {"run": None, "acquisition": "*"}},
        plugin_settings={"plugin": "MultiProc", "plugin_args": {"n_procs": 2}}, targets=("T2w", "FLAIR"),
        voxel_size=(1.0, 1.0, 1.5), fa="T2var", tr=3000.0, weights=Path("/w.pt"), mem_mb=8192,
        source=opt.parse_source(['{"acq": "mprage", "run": 2, "echo": null}', "FLAIR"]), sources="single",
    )
    path = settings.to_toml()
    assert path == tmp_path / settings.run_uuid / "config.toml"
    loaded = Settings.from_toml(path)
    assert loaded == settings and loaded.bids_filters["t1w"]["run"] is None
    assert loaded.source.filters == {"acquisition": "mprage", "run": 2, "echo": None}  # typed --source survives
    assert [s.filters for s in loaded.source.each()][1:] == [{"suffix": "FLAIR"}]  # so does a repeated one
    assert loaded.sources == "single"
    assert not list(path.parent.glob(".*tmp"))  # atomic write leaves no temporary file
    assert settings.database_path == tmp_path / settings.run_uuid / "bids_db"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.targets = ("T1w",)  # frozen


def test_parse_repeated_source():
    one = opt.parse_source(["acq-mprage_T1w"])
    assert one.more == () and str(one) == "acq-mprage_T1w"
    several = opt.parse_source(["T2w", "FLAIR", "T2w"])  # a repeated option counts once
    assert [s.spec for s in several.each()] == ["T2w", "FLAIR"]
    assert [s.filters for s in several.each()] == [{"suffix": "T2w"}, {"suffix": "FLAIR"}]
    assert str(several) == "T2w FLAIR"
    with pytest.raises(UsageError, match="--source acq_T1w"):
        opt.parse_source(["T1w", "acq_T1w"])
