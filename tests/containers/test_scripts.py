"""The container and SLURM scripts parse, lint clean, and keep their state outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = [REPO / "scripts" / "container_smoke.sh", REPO / "scripts" / "slurm_test.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
    assert "set -euo pipefail" in script.read_text()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_smoke_sandbox_flags() -> None:
    text = SCRIPTS[0].read_text()
    sandbox = re.search(r"^SANDBOX=\((.*)\)$", text, flags=re.M).group(1)
    for flag in ("--network none", "--read-only", "--tmpfs", "--user"):
        assert flag in sandbox, flag
    user = re.search(r"^USER_ID=(\d+):(\d+)", text, flags=re.M)
    assert int(user.group(1)) not in (0, 1000)  # neither root nor the image's own user
    assert "--runtime runc --cgroup-manager cgroupfs" in text


@pytest.mark.parametrize(("script", "var"), [(SCRIPTS[0], "SMOKE_DIR"), (SCRIPTS[1], "SLURM_DIR")],
                         ids=["smoke", "slurm"])
def test_state_lives_outside_the_repository(script: Path, var: str) -> None:
    default = re.search(rf"^{var}=\$\{{{var}:-([^}}]+)\}}", script.read_text(), flags=re.M).group(1)
    assert default.startswith("/var/tmp/")


def test_slurm_config_matches_the_brief() -> None:
    text = SCRIPTS[1].read_text()
    for line in ("SelectType=select/cons_tres", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
                 "AuthType=auth/munge"):
        assert line in text
    assert "cgroup" not in text.split("cat >\"$SLURM_CONF\"")[1].split("EOF")[0].lower()
