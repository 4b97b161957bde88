"""Helpers of the robustness corpus: run the real CLI in a subprocess and check what a user sees.

Every case must end with: the documented exit code, a last stderr line of the documented form,
no traceback and no nipype chatter on the console, no partial (temporary) file in OUTPUT_DIR, and
BIDS_DIR unchanged byte for byte (checksums of every file and link before and after).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "TEMPLATEFLOW_AUTOUPDATE": "0",
                "MPLBACKEND": "Agg", "COLUMNS": "200", "TUMSYN_BIDS_VALIDATOR": "builtin"})
    env.pop("TUMSYN_WEIGHTS", None)
    env.pop("TUMSYN_LOG_FILE", None)
    env.update(extra)
    return env


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of the content (links: their target text, and content when present)."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
                if path.is_file():
                    out[rel] += ":" + hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                out[rel] = "dir"
    return out


def partial_files(out_dir: Path) -> list[Path]:
    """Temporary files of an atomic write left anywhere in OUTPUT_DIR."""
    if not out_dir.exists():
        return []
    return sorted(p for p in out_dir.rglob(".*.tmp*"))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_cli(*args, cwd: Path, timeout: float = 300, env: dict | None = None) -> Result:
    proc = subprocess.run([sys.executable, "-m", "tumsyn_bids", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or cli_env(), cwd=cwd)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_console(result: Result, *, verbose: bool = False) -> None:
    """No traceback and no nipype log lines on the console (unless -vvv)."""
    console = result.stdout + result.stderr
    if not verbose:
        assert "Traceback" not in console, console[-3000:]
        assert "nipype.workflow" not in console and "[Node]" not in console, console[-3000:]


def annex(root: Path, names_absent: tuple[str, ...] = ()) -> None:
    """Turn every image into a git-annex symlink; drop the content of ``names_absent``."""
    for img in sorted(root.glob("sub-*/**/*.nii*")):
        data = img.read_bytes()
        key = f"SHA256E-s{len(data)}--{hashlib.sha256(data).hexdigest()}.nii.gz"
        obj = root / ".git" / "annex" / "objects" / "Xy" / "Zw" / key / key
        obj.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(img, obj)
        img.symlink_to(os.path.relpath(obj, img.parent))
        if img.name in names_absent:
            obj.unlink()
