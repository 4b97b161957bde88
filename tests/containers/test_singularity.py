"""Singularity.def parses with spython and runs the same entrypoint as the Docker image."""

from __future__ import annotations

import json
import re
from pathlib import Path

from spython.main.parse.parsers import SingularityParser
from spython.main.parse.writers import DockerWriter

REPO = Path(__file__).resolve().parents[2]
DEF = REPO / "Singularity.def"


def _docker_entrypoint() -> str:
    for line in (REPO / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            (exe,) = json.loads(line.split(" ", 1)[1])
            return exe
    raise AssertionError("Dockerfile has no ENTRYPOINT")


def _section(name: str) -> str:
    match = re.search(rf"^%{name}\s*\n(.*?)(?=^%|\Z)", DEF.read_text(), flags=re.M | re.S)
    assert match, f"Singularity.def has no %{name} section"
    return match.group(1)


def test_spython_parses_and_runscript_execs_the_entrypoint() -> None:
    recipe = SingularityParser(str(DEF)).recipe["spython-base"]
    entry = _docker_entrypoint()
    assert recipe.cmd.strip() == f'exec {entry} "$@"'
    assert recipe.test  # spython turns %test into a health check
    assert entry in _section("test")
    docker = DockerWriter(SingularityParser(str(DEF)).recipe).convert()
    assert docker.startswith("FROM ")


def test_bootstraps_from_the_docker_image() -> None:
    header = DEF.read_text().split("%", 1)[0]
    assert re.search(r"^Bootstrap:\s*docker\s*$", header, flags=re.M)
    assert re.search(r"^From:\s*\{\{\s*IMAGE\s*\}\}\s*$", header, flags=re.M)
    default = re.search(r"IMAGE=(\S+)", _section("arguments")).group(1)
    version = re.search(r'__version__ = "([^"]+)"', (REPO / "tumsyn_bids" / "__init__.py").read_text()).group(1)
    assert default.endswith(f"tumsyn-bids:{version}")


def test_help_shows_the_hpc_call() -> None:
    text = _section("help")
    for needle in ("--cleanenv", "--nv", "-B ", "APPTAINERENV_CUDA_VISIBLE_DEVICES", "-w "):
        assert needle in text, needle
    assert "org.opencontainers.image.title tumsyn-bids" in _section("labels")
