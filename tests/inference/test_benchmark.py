"""The inference benchmark script runs end to end on a tiny volume and prints its numbers."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "inference.py"


def test_benchmark_prints_naive_and_engine_numbers(capsys):
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--shape", "20x20x20", "--threads", "1", "--device", "cpu", "--scale", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "(a) naive loop" in out and "(b) engine fast" in out
    assert '"shape_out": [30, 30, 30]' in out and '"peak_rss_gb"' in out and '"windows_per_s"' in out
    match = re.search(r"max\|a-b\| (\S+) +mean\|a-b\| (\S+) +PSNR\(b vs a, range \S+\) (\S+) dB", out)
    assert match is not None
    # bf16 engine vs float32 naive loop on the same single window: close, not identical
    assert float(match[2]) < 0.05 and float(match[3]) > 20
