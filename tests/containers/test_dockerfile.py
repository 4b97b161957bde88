"""Static checks of docker/Dockerfile, its lock file and build context (fast, no container engine)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Dockerfile instructions in order; comments dropped, backslash continuations joined."""
    result: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line and not pending:
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    return result


def key_values(args: str) -> dict[str, str]:
    """``KEY=value KEY2="v 2"`` (ENV/LABEL/ARG syntax) -> dict."""
    pairs: dict[str, str] = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        pairs[key] = value if sep else ""
    return pairs


def merged(keyword: str, path: Path = DOCKERFILE) -> dict[str, str]:
    """All ENV, LABEL or ARG pairs of the file (later ones win)."""
    pairs: dict[str, str] = {}
    for ins in instructions(path):
        if ins.keyword == keyword:
            pairs.update(key_values(ins.args))
    return pairs


def run_text(path: Path = DOCKERFILE) -> str:
    """All RUN commands joined, whitespace normalised."""
    return "\n".join(re.sub(r"\s+", " ", i.args) for i in instructions(path) if i.keyword == "RUN")


HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HADOLINT, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_clean() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nUSER root\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042"):
        assert rule in result.stdout


def test_base_image_is_a_build_arg_pinned_by_tag_and_digest() -> None:
    ins = instructions()
    assert ins[0].keyword == "ARG" and ins[0].args.startswith("BASE_IMAGE=")
    default = ins[0].args.split("=", 1)[1]
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", default), default
    assert [i.args for i in ins if i.keyword == "FROM"] == ["${BASE_IMAGE}"]


def test_torch_flavour_is_chosen_by_build_args() -> None:
    args = merged("ARG")
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", args["TORCH_REQUIREMENT"])
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    assert "--index-url" in run_text() and "${TORCH_INDEX_URL:+" in run_text()
    # The pin matches what the README's test command (run verbatim by CI) installs.
    assert args["TORCH_REQUIREMENT"] in (REPO / "README.md").read_text()


def test_lock_file_pins_every_runtime_dependency() -> None:
    lock = {}
    for line in (REPO / "docker" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            spec = str(req.specifier)
            assert spec.startswith("==") and "," not in spec, f"not pinned: {line}"
            lock[canonicalize_name(req.name)] = req
    assert "torch" not in lock  # its wheel flavour comes from TORCH_REQUIREMENT
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        if name == "torch":
            continue
        assert name in lock, f"{dep.name} missing from docker/requirements.txt"
        version = str(lock[name].specifier)[2:]
        assert dep.specifier.contains(version, prereleases=True), f"{name}=={version} violates {dep}"


def test_runtime_environment() -> None:
    env = merged("ENV")
    assert env["TEMPLATEFLOW_HOME"] == "/opt/templateflow"
    assert not env["TEMPLATEFLOW_HOME"].startswith(env["HOME"])
    assert env["TEMPLATEFLOW_AUTOUPDATE"] == "0"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        assert env[var] == "1", var
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert set(env["NVIDIA_DRIVER_CAPABILITIES"].split(",")) >= {"compute", "utility"}
    assert env["NIPYPE_NO_ET"] == "1"  # no version check over the network at import
    assert env["TUMSYN_CONTAINER_TAG"] == "${CONTAINER_TAG}"
    assert "CONTAINER_TAG" in merged("ARG")
    # Caches must be writable under --read-only (tmpfs /tmp) and by any UID.
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert env["TUMSYN_CACHE"].startswith("/tmp/")


def test_user_workdir_entrypoint() -> None:
    ins = instructions()
    tail = {i.keyword: i.args for i in ins}
    user = tail["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert tail["WORKDIR"] == "/tmp"
    entry = ins[-1]
    assert entry.keyword == "ENTRYPOINT"
    (exe,) = __import__("json").loads(entry.args)
    assert exe.startswith("/") and Path(exe).name == "tumsyn-bids"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "tumsyn-bids" in scripts
    assert "chmod -R go=u /home/tumsyn" in run_text()
    assert "useradd" in run_text()


def test_oci_labels_carry_version_and_vcs_ref() -> None:
    labels = merged("LABEL")
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${VCS_REF}"
    assert {"VERSION", "VCS_REF", "BUILD_DATE"} <= set(merged("ARG"))
    init = (REPO / "tumsyn_bids" / "__init__.py").read_text()
    version = re.search(r'__version__ = "([^"]+)"', init).group(1)
    assert merged("ARG")["VERSION"] == version


def test_optional_weights_and_templates_are_build_args() -> None:
    args = merged("ARG")
    assert args["FETCH_WEIGHTS"] == "0"
    assert "13119176" in args["WEIGHTS_RECORD_URL"]
    assert args["FETCH_TEMPLATES"] in {"0", "1"}
    text = run_text()
    assert "fetch_weights.py --enabled \"${FETCH_WEIGHTS}\"" in text
    assert "fetch_templates.py --home \"${TEMPLATEFLOW_HOME}\" --enabled \"${FETCH_TEMPLATES}\"" in text


@pytest.mark.parametrize("keyword", ["COPY", "ADD"])
def test_copied_paths_exist_and_are_in_the_build_context(keyword: str) -> None:
    include = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert "*" in (REPO / ".dockerignore").read_text().splitlines()  # default-deny context
    for ins in instructions():
        if ins.keyword != keyword:
            continue
        sources = [s for s in ins.args.split()[:-1] if not s.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"{keyword} {source}: no such path"
            assert source.rstrip("/") in include, f"{source} is excluded by .dockerignore"
