"""The GPU suite's CPU path runs end to end at a tiny size and writes the JSON it promises."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path

import pytest
import torch

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_suite.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_path_writes_json_and_table(suite, tmp_path, capsys):
    assert suite.main(["--cpu", "--shape", "10x9x8", "--window", "8", "--out", str(tmp_path), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert (tmp_path / "gpu_suite.log").is_file()
    meta = result["meta"]
    assert meta["device"] == "cpu" and meta["official"]["net"] == "mini" and meta["window"] == 8
    assert meta["official"]["layout"].startswith("published") and meta["flops_per_window_encoder"] > 0
    assert "partial" not in result and result["skipped"] == []
    assert not any("error" in c for c in result["cases"])
    cases = {c["case"]: c for c in result["cases"]}
    assert set(cases) == {"official fast x1", "official faithful x1", "official fast x2", "official faithful x2",
                          "tumsyn-small fast x1"}
    for label in ("official fast x1", "official faithful x1"):
        assert cases[label]["shape_out"] == [10, 9, 8]
    for label in ("official fast x2", "official faithful x2"):
        assert cases[label]["shape_out"] == [20, 18, 16]
    assert cases["official faithful x1"]["dtype"] == "float32" and cases["official faithful x1"]["batch"] == 1
    for label in ("official fast x1", "official faithful x2"):
        c = cases[label]
        assert c["seconds"] > 0 and c["windows_per_s"] > 0 and c["device_used"] == "cpu" and not c["cuda_oom"]
        # every window went through the encoder once (no all-zero windows here); queries cover the output
        assert c["encoder_windows"] == c["encoded"] >= 1
        assert c["decoder_queries"] >= math.prod(c["shape_out"])
        assert c["tflops"] > 0 and c["encoder_tflops"] > 0
    assert cases["tumsyn-small fast x1"]["shape_out"] == [10, 9, 8]
    comps = {c["scale"]: c for c in result["comparisons"]}
    assert set(comps) == {1.0, 2.0}
    for c in comps.values():
        assert c["shapes_equal"] and 0 < c["max_abs_diff"] < c["range"] and math.isfinite(c["psnr_db"])
    assert result["fallback"] == {"skipped": "no CUDA device"}
    assert "official faithful x2" in printed and "fast vs faithful at scale 2" in printed
    assert result["table"] in printed


def test_cuda_oom_falls_back_to_cpu_and_is_logged(suite, caplog):
    calls = []

    def fn(device):
        calls.append(device)
        if device.startswith("cuda"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"

    with caplog.at_level(logging.WARNING, logger="gpu_suite"):
        result, info = suite.run_with_fallback(fn, "cuda:0", cpu_fallback=True)
    assert result == "done" and calls == ["cuda:0", "cpu"]
    assert info["cuda_oom"] and info["fallback"] == "cpu" and info["device_used"] == "cpu"
    assert "falling back to the CPU" in caplog.text and "Tried to allocate" in caplog.text
    # without fallback: recorded, not raised; other errors propagate
    calls.clear()
    result, info = suite.run_with_fallback(fn, "cuda:0", cpu_fallback=False)
    assert result is None and info["cuda_oom"] and calls == ["cuda:0"]
    with pytest.raises(ValueError):
        suite.run_with_fallback(lambda d: (_ for _ in ()).throw(ValueError("bad")), "cuda:0", cpu_fallback=True)


def test_peak_table_and_comparison(suite):
    import numpy as np

    assert suite.bf16_peak("NVIDIA H100 80GB HBM3") == 989.0
    assert suite.bf16_peak("NVIDIA H200") == 989.0
    assert suite.bf16_peak("NVIDIA H100 PCIe") == 756.0
    assert suite.bf16_peak("Some Other GPU") is None
    a = np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 10, 10)
    c = suite.compare(a, a + 0.01)
    assert c["psnr_db"] == pytest.approx(40.0, abs=0.01) and c["max_abs_diff"] == pytest.approx(0.01, abs=1e-6)
