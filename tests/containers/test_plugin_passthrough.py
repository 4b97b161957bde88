"""``--use-plugin FILE`` reaches nipype: the plugin named in the YAML runs, with its arguments."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

_conftest = importlib.util.spec_from_file_location("containers_conftest", Path(__file__).with_name("conftest.py"))
_module = importlib.util.module_from_spec(_conftest)
_conftest.loader.exec_module(_module)
run_app = _module.run_app

COMMON = ("--skull-strip", "off", "--device", "cpu", "--skip-bids-validation", "--target", "T2w")


def _outputs(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.glob("sub-*/anat/*_desc-tumsyn_T2w.nii.gz"))


def _log(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((out / "logs").glob("tumsyn-*.log")))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("plugin_yaml", "plugin", "nipype_says"),
    [
        ("plugin: Linear\n", "Linear", "Running serially"),
        (
            "plugin: MultiProc\nplugin_args:\n  n_procs: 2\n  n_gpu_procs: 1\n  memory_gb: 4\n",
            "MultiProc",
            "[MultiProc] Running",
        ),
    ],
    ids=["Linear", "MultiProc"],
)
def test_plugin_file_selects_the_nipype_plugin(tmp_path, two_subjects, random_checkpoint, plugin_yaml, plugin,
                                               nipype_says) -> None:
    plugin_file = tmp_path / "plugin.yml"
    plugin_file.write_text(plugin_yaml)
    out = tmp_path / "out"
    result = run_app(two_subjects, out, "participant", "--weights", random_checkpoint, *COMMON,
                     "--use-plugin", plugin_file, "-w", tmp_path / "work")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _outputs(out) == ["sub-01/anat/sub-01_desc-tumsyn_T2w.nii.gz", "sub-02/anat/sub-02_desc-tumsyn_T2w.nii.gz"]
    log = _log(out)
    assert f"with {plugin} " in log
    assert nipype_says in log  # nipype's own logging goes to the run log ...
    assert nipype_says not in result.stdout + result.stderr  # ... not to the console
    if plugin == "MultiProc":  # n_procs, memory_gb and n_gpu_procs of the file reached the scheduler
        assert re.search(r"Free memory \(GB\): [\d.]+/4\.00, Free processors: \d/2, Free GPU slot:\d/1\.", log)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("plugin_args: {n_procs: 2}\n", "must be a YAML mapping with a 'plugin' key"),
        ("plugin: MultiProc\nplugin_args: [1, 2]\n", "'plugin_args' must be a mapping"),
        ("plugin: [unclosed\n", "not valid YAML"),
    ],
    ids=["no-plugin-key", "args-not-mapping", "bad-yaml"],
)
def test_bad_plugin_file_is_a_usage_error(tmp_path, two_subjects, content, problem) -> None:
    plugin_file = tmp_path / "plugin.yml"
    plugin_file.write_text(content)
    result = run_app(two_subjects, tmp_path / "out", "participant", "--use-plugin", plugin_file, timeout=120)
    assert result.returncode == 64
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert str(plugin_file) in lines[-1] and problem in lines[-1], result.stderr


def test_missing_plugin_file_is_a_usage_error(tmp_path, two_subjects) -> None:
    missing = tmp_path / "absent.yml"
    result = run_app(two_subjects, tmp_path / "out", "participant", "--use-plugin", missing, timeout=120)
    assert result.returncode == 64
    assert str(missing) in result.stderr
