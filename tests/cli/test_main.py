"""The tumsyn-bids command line: every guard, exit code and option alias."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tumsyn_bids import __version__

HEAVY = ("torch", "ants", "nipype", "nilearn", "matplotlib", "bids", "nibabel", "pandas")


def _config(work: Path) -> dict:
    (path,) = work.glob("*/config.toml")
    return tomllib.loads(path.read_text())["tumsyn"]


def _plan(work: Path) -> dict:
    (path,) = work.glob("*/plan.json")
    return json.loads(path.read_text())


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("tumsyn-bids: error: ")
    return lines[0]


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(flag):
    code = (
        "import sys\n"
        "from tumsyn_bids.cli.main import run\n"
        f"rc = run([{flag!r}])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy, rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY [] 0" in proc.stdout, proc.stdout + proc.stderr
    if flag == "--version":
        assert f"tumsyn-bids {__version__}" in proc.stdout
    else:
        assert "--participant-label" in proc.stdout and "--inference-mode" in proc.stdout


def test_python_dash_m_and_console_script(make_ds, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tumsyn_bids", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"tumsyn-bids {__version__}"
    exe = Path(sys.executable).with_name("tumsyn-bids")
    if exe.exists():
        proc = subprocess.run([str(exe), str(tmp_path / "nope"), str(tmp_path / "out"), "participant"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 64 and "BIDS_DIR does not exist" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["participant"], "Missing argument"),
        (["{ds}", "{out}", "both"], "analysis_level"),
        (["{ds}", "{out}", "participant", "--no-such-flag"], "No such option"),
        (["{ds}", "{out}", "participant", "--nprocs", "0"], "--nprocs"),
        (["{ds}", "{out}", "participant", "--device", "tpu"], "--device"),
        (["{ds}", "{out}", "participant", "--inference-mode", "slow"], "--inference-mode"),
        (["{ds}", "{out}", "participant", "--skull-strip", "maybe"], "--skull-strip"),
        (["{ds}", "{out}", "participant", "--voxel", "0", "1", "1"], "positive"),
        (["{ds}", "{out}", "participant", "--voxel", "1", "1"], "three sizes"),
        (["{ds}", "{out}", "participant", "--voxel", "a", "1", "1"], "numbers"),
        (["{ds}", "{out}", "participant", "--mem", "8X"], "--mem 8X"),
        (["{ds}", "{out}", "participant", "--target", "CT"], "unknown contrast"),
        (["{ds}", "{out}", "participant", "--fa", "steep"], "--fa"),
        (["{ds}", "{out}", "participant", "--tr", "-5"], "--tr"),
        (["{ds}", "{out}", "participant", "--output-spaces", "fsaverage"], "unknown space"),
        (["{ds}", "{out}", "participant", "--weights", "{out}/none.pt"], "--weights"),
        (["{ds}", "{out}", "participant", "--participant-label", "sub-0_1"], "not a valid BIDS label"),
        (["{ds}", "{out}", "participant", "--source", "acq_T1w"], "--source"),
        (["{ds}", "{out}", "participant", "--source", "T1w", "--source", "acq_T1w"], "--source acq_T1w"),
        (["{ds}", "{out}", "participant", "--source", "T1w", "--sources", "auto"], "cannot be combined"),
        (["{ds}", "{out}", "participant", "--sources", "all"], "--sources"),
    ],
)
def test_usage_errors_exit_64(cli, make_ds, tmp_path, args, message):
    ds = make_ds("inherited")
    argv = [a.format(ds=ds, out=tmp_path / "out") for a in args]
    code, out, err = cli(*argv)
    assert code == 64
    assert message in _one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_guards(cli, make_ds, tmp_path):
    ds = make_ds("inherited")
    code, _, err = cli(ds, ds, "participant")
    assert code == 64 and "must differ from BIDS_DIR" in _one_error_line(err) and "derivatives" in err
    code, _, err = cli(ds, tmp_path / "out", "participant", "-w", ds / "work")
    assert code == 64 and "must not be inside BIDS_DIR" in _one_error_line(err)
    code, _, err = cli(ds, ds / "sub-01" / "out", "participant")
    assert code == 64 and "under derivatives/" in _one_error_line(err)
    code, _, err = cli(tmp_path / "missing", tmp_path / "out", "participant")
    assert code == 64 and f"{tmp_path / 'missing'}: BIDS_DIR does not exist" in _one_error_line(err)
    code, _, err = cli(ds / "participants.tsv", tmp_path / "out", "participant")
    assert code == 64 and "not a directory" in _one_error_line(err)
    code, _, err = cli(ds, tmp_path / "out", "participant", "--participant-label", "01", "sub-09", "10")
    assert code == 64 and "sub-09 sub-10" in _one_error_line(err)


def test_output_in_derivatives_is_accepted_and_dry_run_plans(cli, make_ds, tmp_path):
    ds = make_ds("inherited")
    code, out, err = cli(ds, ds / "derivatives" / "tumsyn", "participant", "--dry-run", "-w", tmp_path / "w")
    assert code == 0, err
    assert "sub-01  T2w <- sub-01/anat/sub-01_acq-MPRAGE_T1w.nii.gz" in out
    assert (ds / "derivatives" / "tumsyn").is_dir()
    assert len(_plan(tmp_path / "w")["outputs"]) == 2


def test_multi_value_options_and_aliases(cli, make_ds, tmp_path):
    ds = make_ds("many_variants")
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: MultiProc\nplugin_args:\n  n_procs: 2\n  mp_context: spawn\n")
    work = tmp_path / "w"
    code, _, err = cli(
        ds, tmp_path / "out", "participant", "--participant_label", "sub-01", "02",
        "--target", "T2w", "flair", "--voxel", "1", "1", "1.5", "--output-spaces", "MNI152NLin2009cAsym:res-2", "T1w",
        "--mem_mb", "8G", "--nthreads", "3", "--omp_nthreads", "2", "--work_dir", work, "--use-plugin", plugin,
        "--skip_bids_validation", "--notrack", "--stop-on-first-crash", "--resource-monitor", "--mask-output",
        "--inference-mode", "faithful", "--device", "cpu", "--skull-strip", "off", "--model", "tumsyn-official",
        "--session-id", "x", "-vv", "--plan-only",
    )
    assert code == 0, err
    cfg = _config(work)
    assert cfg["participant_labels"] == ["01", "02"] and cfg["targets"] == ["T2w", "FLAIR"]
    assert cfg["voxel_size"] == [1.0, 1.0, 1.5] and cfg["mem_mb"] == 8192
    assert cfg["nprocs"] == 3 and cfg["omp_nthreads"] == 2 and cfg["verbosity"] == 2
    assert cfg["output_spaces"] == ["MNI152NLin2009cAsym:res-2", "T1w"] and cfg["session_labels"] == ["x"]
    assert json.loads(cfg["plugin_settings"])["plugin_args"]["mp_context"] == "spawn"
    assert cfg["skip_bids_validation"] and cfg["notrack"] and cfg["stop_on_first_crash"] and cfg["mask_output"]
    assert cfg["resource_monitor"] and cfg["inference_mode"] == "faithful" and cfg["device"] == "cpu"
    assert cfg["skull_strip"] == "off" and cfg["model"] == "tumsyn-official"
    plan = _plan(work)
    assert {(o["subject"], o["target"]) for o in plan["outputs"]} == {
        ("01", "T2w"), ("01", "FLAIR"), ("02", "T2w"), ("02", "FLAIR")}
    assert all(o["voxel_size"] == [1.0, 1.0, 1.5] for o in plan["outputs"])
    assert "planned 4 output(s)" in err  # -vv shows progress lines


def test_prompt_overrides_and_source(cli, make_ds, tmp_path):
    ds = make_ds("many_variants")
    code, _, err = cli(ds, tmp_path / "out", "participant", "--participant-label", "01", "--target", "FLAIR",
                       "--source", "T2w", "--tr", "8000", "--te", "100", "--ti", "2300", "--fa", "T2var",
                       "--field-strength", "1.5", "--vendor", "GE MEDICAL SYSTEMS", "--voxel", "0.7", "-w",
                       tmp_path / "w", "--dry-run")
    assert code == 0, err
    (out,) = _plan(tmp_path / "w")["outputs"]
    assert out["source_path"].endswith("sub-01_acq-tsePMCoff_rec-wre_T2w.nii.gz")
    assert out["prompt"] == (
        "Age: None; Gender: None; Scanner: 1.5 GE; Modality: FLAIR; Voxel size: (0.7, 0.7, 0.7); "
        "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (8000.0, 100.0, 2300.0, T2var)"
    )


def test_bids_database_dir_and_clean_workdir(cli, make_ds, tmp_path):
    ds = make_ds("inherited")
    work, db = tmp_path / "w", tmp_path / "db"
    (work / "old").mkdir(parents=True)
    code, _, err = cli(ds, tmp_path / "out", "participant", "-w", work, "--bids-database-dir", db,
                       "--clean-workdir", "--dry-run")
    assert code == 0, err
    assert not (work / "old").exists() and any(db.iterdir())
    assert not list(work.glob("*/bids_db"))


def test_missing_description_exit_16_or_warning(cli, make_ds, tmp_path):
    ds = make_ds("inherited")
    (ds / "dataset_description.json").unlink()
    code, _, err = cli(ds, tmp_path / "out", "participant", "--dry-run")
    assert code == 16 and "dataset_description.json: missing" in _one_error_line(err)
    assert not (tmp_path / "out").exists()
    code, out, err = cli(ds, tmp_path / "out", "participant", "--dry-run", "--skip-bids-validation")
    assert code == 0 and "warning" in err and "dataset_description.json" in err


def test_invalid_sidecar_exit_16_then_65(cli, make_ds, tmp_path):
    ds = make_ds("inherited")
    (ds / "FLAIR.json").write_text("{broken")
    code, _, err = cli(ds, tmp_path / "out", "participant", "--dry-run")
    assert code == 16 and f"{ds / 'FLAIR.json'}: sidecar is not valid JSON" in _one_error_line(err)
    code, _, err = cli(ds, tmp_path / "out", "participant", "--dry-run", "--skip-bids-validation")
    assert code == 65 and "FLAIR.json" in _one_error_line(err)


def test_truncated_only_source_exit_65(cli, make_ds, tmp_path):
    ds = make_ds("philips_excitation")
    image = ds / "sub-S01/anat/sub-S01_T1w.nii.gz"
    image.write_bytes(image.read_bytes()[:150])
    code, _, err = cli(ds, tmp_path / "out", "participant", "--dry-run")
    assert code == 65
    line = _one_error_line(err)
    assert f"{image}: not a readable NIfTI image" in line and "truncated" in line


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), ('["t1w"]', "JSON object"), ('{"bold": {}}', "unknown query"),
     ('{"t1w": {"subject": "01"}}', "set by tumsyn-bids"), ('{"t1w": {"colour": "red"}}', "colour")],
)
def test_bad_filter_file_exit_64(cli, make_ds, tmp_path, content, message):
    ds = make_ds("inherited")
    bad = tmp_path / "filters.json"
    bad.write_text(content)
    code, _, err = cli(ds, tmp_path / "out", "participant", "--bids-filter-file", bad, "--dry-run")
    assert code == 64 and message in _one_error_line(err)


def test_filter_file_selecting_nothing_exit_66(cli, make_ds, tmp_path):
    ds = make_ds("inherited")
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"anat": {"acquisition": "nonexistent"}}))
    code, _, err = cli(ds, tmp_path / "out", "participant", "--bids-filter-file", filters, "--dry-run")
    assert code == 66 and "nothing to synthesize for sub-01, sub-02" in _one_error_line(err)


def test_no_anat_exit_66_and_all_existing_exit_0(cli, make_ds, tmp_path, fx):
    ds = fx.make_dataset(tmp_path / "func_only", {"sub-01/func/sub-01_task-rest_bold.nii.gz": None})
    code, _, err = cli(ds, tmp_path / "out", "participant", "--dry-run")
    assert code == 66 and "no usable source image" in _one_error_line(err)
    pair = make_ds("full_pair")
    code, _, err = cli(pair, tmp_path / "out2", "participant", "--target", "T2w", "T1w", "--skip-existing",
                       "--dry-run")
    assert code == 0 and "nothing to do" in err


def test_cannot_create_output_exit_73(cli, make_ds, tmp_path):
    ds = make_ds("inherited")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli(ds, blocker / "out", "participant", "--dry-run")
    assert code == 73 and f"{blocker / 'out'}: cannot create OUTPUT_DIR" in _one_error_line(err)
    code, _, err = cli(ds, tmp_path / "out", "participant", "-w", blocker / "work", "--dry-run")
    assert code == 73 and "cannot create work directory" in _one_error_line(err)


def test_group_level_needs_outputs_and_no_work_dir(cli, make_ds, tmp_path, monkeypatch):
    import types

    ds = make_ds("inherited")
    code, _, err = cli(ds, tmp_path / "never", "group")
    assert code == 64 and "OUTPUT_DIR does not exist" in _one_error_line(err)
    calls = []
    stub = types.ModuleType("tumsyn_bids.runner")
    stub.run_group_level = lambda settings: calls.append(settings) or 0
    monkeypatch.setitem(sys.modules, "tumsyn_bids.runner", stub)
    (ds / "dataset_description.json").unlink()  # the group level does not read BIDS_DIR
    (tmp_path / "out").mkdir()
    code, _, err = cli(ds, tmp_path / "out", "group")
    assert code == 0, err
    assert calls[0].analysis_level == "group" and not (tmp_path / "work").exists()


def test_runner_hook_missing_module_exits_70(cli, make_ds, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tumsyn_bids.runner", None)  # import now fails as if absent
    ds = make_ds("inherited")
    code, _, err = cli(ds, tmp_path / "out", "participant", "-w", tmp_path / "w")
    assert code == 70 and "participant-level synthesis is not yet implemented" in err


def test_runner_hook_receives_settings_and_plan(cli, make_ds, tmp_path, monkeypatch):
    import types

    calls = []
    stub = types.ModuleType("tumsyn_bids.runner")
    stub.run_participant_level = lambda settings, plan: calls.append((settings, plan)) or 1
    stub.run_group_level = lambda settings: calls.append((settings, None)) or 0
    monkeypatch.setitem(sys.modules, "tumsyn_bids.runner", stub)
    ds = make_ds("inherited")
    code, _, _ = cli(ds, tmp_path / "out", "participant", "--participant-label", "02", "-w", tmp_path / "w")
    assert code == 1
    settings, plan = calls[0]
    assert settings.participant_labels == ("02",) and [o.subject for o in plan.outputs] == ["02"]


def test_internal_error_is_one_line_with_log(cli, make_ds, tmp_path, monkeypatch):
    import types

    stub = types.ModuleType("tumsyn_bids.runner")

    def boom(settings, plan):
        raise RuntimeError("kaboom")

    stub.run_participant_level = boom
    monkeypatch.setitem(sys.modules, "tumsyn_bids.runner", stub)
    ds = make_ds("inherited")
    code, _, err = cli(ds, tmp_path / "out", "participant", "-w", tmp_path / "w")
    assert code == 70 and "RuntimeError: kaboom" in _one_error_line(err)
    (log,) = (tmp_path / "w").glob("*/log/crash-cli.txt")
    assert "Traceback" in log.read_text()
    code, _, err = cli(ds, tmp_path / "out", "participant", "-w", tmp_path / "w", "-vvv")
    assert code == 70 and "Traceback" in err


@pytest.mark.parametrize("model", ["tumsyn-official", "lccd-small"])
def test_save_maps_with_a_model_without_maps_fails_before_writing(cli, make_ds, tmp_path, model):
    ds = make_ds("inherited")
    out, work = tmp_path / "out", tmp_path / "w"
    code, _, err = cli(ds, out, "participant", "--model", model, "--save-maps", "-w", work)
    line = _one_error_line(err)
    assert code == 64 and "--save-maps" in line and f"model {model} does not predict tissue maps" in line
    assert not out.exists() and not work.exists()
