"""benchmarks/gate.py: the ship gate compares two benchmark runs task by task."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gate.py"


@pytest.fixture(scope="module")
def gate():
    spec = importlib.util.spec_from_file_location("gate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("real_quality", None)


def _real(path: Path, scores: dict[str, float]) -> Path:
    rows = [{"task": t, "model": {"psnr": v}, "calibrated": {"psnr": v + 1}, "hist": {"psnr": 12.0},
             "hist-inv": {"psnr": 13.0}, "best_baseline": "hist-inv", "model_minus_best_db": v - 13.0}
            for t, v in scores.items()]
    path.write_text(json.dumps({"rows": rows}))
    return path


def _sim(path: Path, scores: dict[str, float]) -> Path:
    rows = []
    for t, v in scores.items():
        for subject in ("a", "b"):
            rows += [{"subject": subject, "task": t, "method": "refined", "psnr_masked": v},
                     {"subject": subject, "task": t, "method": "model", "psnr_masked": v - 3},
                     {"subject": subject, "task": t, "method": "hist", "psnr_masked": 15.0}]
    path.write_text(json.dumps(rows))
    return path


def test_a_better_run_passes_and_a_task_lost_by_more_than_the_tolerance_fails(gate, tmp_path, capsys):
    old = _real(tmp_path / "old.json", {"a": 10.0, "b": 12.0, "c": 14.0})
    better = _real(tmp_path / "new.json", {"a": 11.0, "b": 12.1, "c": 13.7})
    assert gate.main(["--real", str(old), str(better)]) == 0
    assert "gate: PASS" in capsys.readouterr().out
    lost = _real(tmp_path / "lost.json", {"a": 13.0, "b": 12.0, "c": 13.4})  # mean up, c down by 0.6
    assert gate.main(["--real", str(old), str(lost)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: c: 14.00 -> 13.40 dB" in out and "gate: FAIL" in out


def test_a_worse_mean_fails_even_within_the_tolerance(gate, tmp_path, capsys):
    old = _real(tmp_path / "old.json", {"a": 10.0, "b": 12.0})
    worse = _real(tmp_path / "new.json", {"a": 9.7, "b": 11.8})
    assert gate.main(["--real", str(old), str(worse)]) == 1
    assert "worse on the mean" in capsys.readouterr().out


def test_simulated_runs_are_gated_on_the_refined_model_and_summarised(gate, tmp_path, capsys):
    real = _real(tmp_path / "r.json", {"a": 10.0})
    old = _sim(tmp_path / "so.json", {"T1w->T2w": 17.0, "T1w->FLAIR": 14.0})
    new = _sim(tmp_path / "sn.json", {"T1w->T2w": 18.0, "T1w->FLAIR": 16.0})
    assert gate.main(["--real", str(real), str(real), "--sim", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "refined: ahead of every baseline on 1/2 tasks" in out  # old: 17 > 15 but 14 < 15
    assert "refined: ahead of every baseline on 2/2 tasks" in out  # new
    assert gate.main(["--real", str(real), str(real), "--sim", str(new), str(old)]) == 1
