"""``--weights`` in every documented form, and every unreadable weights file: one line, exit 65.

Runs the real CLI in a subprocess on a one-image dataset; planning happens first, then the weights
are loaded (and so checked) before any workflow starts, so these cases take seconds.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import fixtures_bids as fx
import pytest
import torch

from tumsyn_bids.models.checkpoint import save_official_layout
from tumsyn_bids.models.configs import TextConfig
from tumsyn_bids.models.synthesis import SynthesisNet
from tumsyn_bids.models.text_encoder import TextEncoder


def _env() -> dict[str, str]:
    env = dict(os.environ, TUMSYN_BIDS_VALIDATOR="builtin", OMP_NUM_THREADS="1", COLUMNS="200")
    env.pop("TUMSYN_WEIGHTS", None)
    return env


def _cli(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tumsyn_bids", tmp_path / "bids", tmp_path / "out", "participant",
                           "-w", tmp_path / "work", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=_env(), cwd=tmp_path)


def _last(proc) -> str:
    return [line for line in proc.stderr.splitlines() if line.strip()][-1]


@pytest.fixture
def bids(tmp_path) -> Path:
    return fx.make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": fx.EYETRACKING_T1W})


def _tiny_official(folder: Path) -> tuple[Path, Path]:
    """The published two-file layout with tiny widths (as tests/models/test_checkpoints.py)."""
    torch.manual_seed(0)
    net = SynthesisNet(enc_width=8, n_resblocks=2, feat_dim=96, text_dim=16, heads=1, decoder_hidden=[16, 8]).eval()
    text = TextEncoder.from_config(TextConfig(width=64, layers=1, heads=1, embed_dim=16)).eval()
    synth_path, stage1_path = folder / "tumsyn_synthesis.pth", folder / "bmlip_stage1.pth"
    save_official_layout(synth_path, net, args={"encoder_spec": {"name": "edsr"}})
    stage1 = {"visual.conv1.weight": torch.randn(4, 1, 3, 3, 3)}
    stage1.update(text.state_dict())
    torch.save({"model_state_dict": stage1, "epoch": 7}, stage1_path)
    return synth_path, stage1_path


@pytest.mark.parametrize("form", ["dir", "pair", "pair_reversed"])
def test_documented_forms_are_accepted_and_load(tmp_path, bids, form):
    from tumsyn_bids.cli.main import build_settings
    from tumsyn_bids.models.loading import load_model

    synth, stage1 = _tiny_official(tmp_path / "official")
    value = {"dir": str(synth.parent), "pair": f"{synth}{os.pathsep}{stage1}",
             "pair_reversed": f"{stage1}{os.pathsep}{synth}"}[form]
    proc = _cli(tmp_path, "--model", "tumsyn-official", "--weights", value, "--dry-run")
    assert proc.returncode == 0, proc.stderr  # used to be "--weights: no such file" (exit 64)
    assert "no such file" not in proc.stderr

    values = {key: None for key in ("participant_label", "session_label", "bids_filter_file", "work_dir", "nprocs",
                                    "omp_nthreads", "mem", "use_plugin", "target", "voxel", "source", "tr", "te",
                                    "ti", "fa", "field_strength", "vendor", "bids_database_dir", "output_spaces")}
    from tumsyn_bids.cli.main import AnalysisLevel, Device, InferenceMode, SkullStrip

    values.update(bids_dir=bids, output_dir=tmp_path / "out", analysis_level=AnalysisLevel.participant,
                  work_dir=tmp_path / "work", weights=Path(value), model="tumsyn-official", device=Device.cpu,
                  skull_strip=SkullStrip.auto, inference_mode=InferenceMode.fast, verbose=0,
                  stop_on_first_crash=False, skip_bids_validation=False, skip_existing=False, mask_output=False,
                  clean_workdir=False, resource_monitor=False, notrack=False, dry_run=True)
    settings = build_settings(values)
    bundle = load_model(settings.model, str(settings.weights))
    assert bundle.name == "tumsyn-official" and "+" in bundle.sha256


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_running_pickle_is_refused_with_its_reason(tmp_path, bids):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "tumsyn-native", "payload": _Exploit(str(marker))}, evil)
    proc = _cli(tmp_path, "--weights", evil)
    assert proc.returncode == 65, proc.stderr
    assert re.fullmatch(rf"tumsyn-bids: error: {re.escape(str(evil))}: refused to load: the file needs code to run "
                        r"\((io|builtins)\.open\); only plain weights files are accepted", _last(proc)), _last(proc)
    assert not marker.exists() and "Traceback" not in proc.stderr


def test_unreadable_weights_files_are_one_line_exit_65(tmp_path, bids, random_checkpoint):
    cases = {}
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(random_checkpoint.read_bytes()[:100_000])
    cases[cut] = "cannot read checkpoint (truncated or corrupt?)"
    keyless = tmp_path / "keyless.pt"
    torch.save({"format": "tumsyn-native", "version": 1,
                "spec": {"text_encoder": {"name": "clip-text", "args": {}}, "synthesis": {"name": "lccd", "args": {}}}},
               keyless)
    cases[keyless] = "not a usable tumsyn checkpoint ("
    legacy = tmp_path / "legacy.pt"
    with open(legacy, "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    cases[legacy] = ": "
    for path, expected in cases.items():
        proc = _cli(tmp_path, "--weights", path)
        assert proc.returncode == 65, (path, proc.stderr)
        last = _last(proc)
        assert last.startswith(f"tumsyn-bids: error: {path}: ") and expected in last, last
        assert "Traceback" not in proc.stderr and "KeyError:" not in last.split("(")[0]
        assert not (tmp_path / "out" / "sub-01" / "anat").exists()
