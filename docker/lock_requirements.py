"""Print docker/requirements.txt: the pinned run-time closure of tumsyn-bids in this environment.

Run in a venv where the project was installed as the README says (torch first, then the package):

    python docker/lock_requirements.py > docker/requirements.txt

torch is left out (the image pins its wheel flavour with the TORCH_REQUIREMENT build ARG), and so
are test-only packages: only pyproject's ``[project].dependencies`` and their requirements are walked.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# Pinned run-time dependencies of tumsyn-bids for the container image (Python 3.11, linux x86_64).
# The closure of pyproject's dependencies as installed in the project's tested environment.
# torch is pinned separately (TORCH_REQUIREMENT build ARG): its wheel flavour (CUDA/CPU) comes
# from another index. Regenerate: python docker/lock_requirements.py > docker/requirements.txt"""


PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def closure(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """{canonical name: installed version} of pyproject's run-time requirements, recursively."""
    env = {"extra": ""}
    roots = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pending = [Requirement(r) for r in roots]
    versions: dict[str, str] = {}
    while pending:
        req = pending.pop()
        if req.marker and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name in versions:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError as exc:
            raise SystemExit(f"lock_requirements: {req.name} is required but not installed") from exc
        versions[name] = dist.version
        pending.extend(Requirement(r) for r in dist.requires or [])
    return versions


def main() -> int:
    print(HEADER)
    for name, version in sorted(closure().items()):
        if name != "torch":
            print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
