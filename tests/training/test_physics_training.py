"""Training the physics-structured tumsyn-small: simulated patches, a few steps, resume, export."""

from __future__ import annotations

import json

import numpy as np
import torch
import typer
from typer.testing import CliRunner

from tumsyn_bids.cli.train_cmd import train
from tumsyn_bids.training import physics_data as pdata

torch.set_num_threads(1)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(train)
    return app


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def test_train_a_few_steps_then_resume(labelmap, tmp_path):
    out = tmp_path / "run"
    args = ["--labelmaps", str(labelmap), "--out", str(out), "--patch-size", "16", "--batch-size", "1",
            "--no-progress", "--threads", "1"]
    first = CliRunner().invoke(_app(), args + ["--steps", "2"])
    assert first.exit_code == 0, first.output
    assert _steps(out / "losses.jsonl") == [1, 2]
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 2 and record["architecture"] == "physics-unet"
    assert record["data_recipe"]["labelmaps_used"] == ["sphere_seg"]

    again = CliRunner().invoke(_app(), args + ["--steps", "2"])  # same folder without --resume: refused
    assert again.exit_code == 64 and "--resume" in again.output

    second = CliRunner().invoke(_app(), args + ["--steps", "4", "--resume"])
    assert second.exit_code == 0, second.output
    assert _steps(out / "losses.jsonl") == [1, 2, 3, 4]  # continued, not restarted
    record2 = json.loads((out / "training.json").read_text())
    assert record2["steps"] == 4 and record2["sha256"] != record["sha256"]

    from tumsyn_bids.models.loading import load_model

    bundle = load_model("tumsyn-small", weights=out / "model.pt")
    assert bundle.sha256 == record2["sha256"] and bundle.spec["synthesis"]["name"] == "physics-unet"


def test_no_labelmaps_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(_app(), ["--out", str(tmp_path / "o"), "--steps", "1", "--no-progress"])
    assert res.exit_code == 64 and "--labelmaps" in res.output


def test_simulated_sample_is_consistent(labelmap):
    vol = pdata.load_label_volume(labelmap)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    cfg = pdata.SimConfig(size=24, lesion_prob=1.0, skull_strip_prob=1.0)
    for _ in range(4):
        s = pdata.simulate_sample(vol, cfg, rng, gen)
        assert s["x"].shape == (1, 24, 24, 24) and s["maps"].shape == (6, 24, 24, 24)
        assert float(s["x"].min()) >= 0 and float(s["x"].max()) <= 1
        outside = s["weight"] == 0
        assert float(s["maps"][0][outside].abs().sum()) == 0  # skull-stripped: no tissue outside
        tissue = s["maps"][0] > 0
        assert bool((s["maps"][3][tissue] <= s["maps"][2][tissue] + 1e-3).all())  # T2* <= T2


def test_lesions_carry_their_own_relaxation():
    lab = torch.full((32, 32, 32), 1)
    lab[:2] = 0
    brain = torch.tensor([False, True])
    wm = torch.tensor([False, True])
    out, names = pdata.insert_lesions(lab, brain, wm, 2, np.random.default_rng(3))
    assert names and int((out >= 2).sum()) > 0
    assert bool((out[:2] == 0).all())  # never painted outside the brain


def test_thick_slice_operator_keeps_ramps_and_loses_detail():
    """Every 5th voxel kept, then linear interpolation back: ramps survive, the rank is the slice count."""
    mat = pdata.thick_slice_matrix(40, 5.0, 1.0, "cpu")
    ramp = torch.arange(40, dtype=torch.float32)
    assert torch.allclose((mat @ ramp)[1:37], ramp[1:37], atol=1e-4)  # between the first and last slice
    assert int(torch.linalg.matrix_rank(mat)) == 8


def test_source_protocols_are_valid_and_varied():
    from tumsyn_bids.physics.signals import validate_protocol

    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        p, contrast = pdata.random_source_protocol(3.0, rng, csf_t1=4000.0)
        validate_protocol(p)
        seen.add((p.sequence, contrast))
    assert {s for s, _ in seen} == {"mprage", "gre", "se", "ir", "space"}
    assert ("mprage", "T1CE") in seen or ("se", "T1CE") in seen


def test_worker_processes_and_time_budget(labelmap, tmp_path):
    """The GPU path's data loader (simulation in worker processes) feeds real batches, and a spent
    time budget stops the run at the step where it ran out, with its state saved and resumable."""
    from tumsyn_bids.training.physics_data import SimConfig
    from tumsyn_bids.training.physics_train import PhysicsTrainConfig, resumed_config
    from tumsyn_bids.training.physics_train import train as train_run

    out = tmp_path / "run"
    cfg = PhysicsTrainConfig(labelmaps=[str(labelmap)], steps=50, batch_size=1, threads=1, device="cpu",
                             workers=1, time_budget=1e-3, sim=SimConfig(size=16))
    summary = train_run(cfg, out, report=lambda m: None)
    assert summary["steps"] == 1  # one step always takes longer than a millisecond
    assert _steps(out / "losses.jsonl") == [1]
    resumed = resumed_config(out, steps=3, time_budget=0.0)
    assert resumed is not None and resumed.workers == 1 and resumed.time_budget == 0.0 and resumed.steps == 3
    assert train_run(resumed, out, report=lambda m: None)["steps"] == 3
    assert _steps(out / "losses.jsonl") == [1, 2, 3]
    assert resumed_config(tmp_path / "empty") is None
