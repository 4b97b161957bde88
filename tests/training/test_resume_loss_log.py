"""A run killed between checkpoints resumes with a loss log that lists each step once.

Claim under test (``training/loop.py``, ``LossLog.truncate_after``: "Drop records past ``step``
(after a resume from an older checkpoint)"). The loss log is written every step, the checkpoint
every ``checkpoint_every`` steps, so a run killed in between leaves log records past its last
checkpoint; the resumed run redoes those steps. The other resume tests resume from a checkpoint
at the last logged step, where nothing needs dropping. The kill is reproduced by appending the
record a killed run would have left (the step after the checkpoint, with a loss no step gives).
"""

from __future__ import annotations

import json

import nibabel as nib
import pytest
import torch
import typer
from typer.testing import CliRunner

from tumsyn_bids.cli.train_cmd import train

from .conftest import sphere_head

torch.set_num_threads(1)
STALE_LOSS = 12345.0


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _leave_a_stale_record(path, step: int) -> None:
    """What a run killed after logging ``step`` but before checkpointing it leaves behind."""
    last = _records(path)[-1]
    with open(path, "a") as handle:
        handle.write(json.dumps({**last, "step": step, "loss": STALE_LOSS}) + "\n")


def test_stage2_resume_drops_records_past_the_checkpoint(tiny_bids, tiny_config, tmp_path):
    app = typer.Typer()
    app.command()(train)
    out = tmp_path / "run"
    args = [str(tiny_bids), "--config", str(tiny_config), "--out", str(out), "--no-progress", "--seed", "3"]
    first = CliRunner().invoke(app, args + ["--steps", "2"])
    assert first.exit_code == 0, first.output
    log = out / "stage2_loss.jsonl"
    _leave_a_stale_record(log, 3)
    assert [r["step"] for r in _records(log)] == [1, 2, 3]
    second = CliRunner().invoke(app, args + ["--steps", "4", "--resume"])
    assert second.exit_code == 0, second.output
    records = _records(log)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] != STALE_LOSS for r in records)  # step 3 is the resumed run's own record


@pytest.fixture()
def labelmap(tmp_path):
    labels, affine = sphere_head(n=40, voxel=1.0)
    path = tmp_path / "sphere_seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), str(path))
    return path


def test_physics_resume_drops_records_past_the_checkpoint(labelmap, tmp_path):
    from tumsyn_bids.training.physics_data import SimConfig
    from tumsyn_bids.training.physics_train import PhysicsTrainConfig, export
    from tumsyn_bids.training.physics_train import train as train_run

    def cfg(steps: int) -> PhysicsTrainConfig:
        return PhysicsTrainConfig(labelmaps=[str(labelmap)], steps=steps, batch_size=1, threads=1, device="cpu",
                                  checkpoint_every=2, sim=SimConfig(size=16))

    out = tmp_path / "run"
    train_run(cfg(2), out, report=lambda m: None)
    _leave_a_stale_record(out / "losses.jsonl", 3)
    train_run(cfg(4), out, report=lambda m: None)
    records = _records(out / "losses.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    curve = export(out)["loss_curve"]
    assert [r["step"] for r in curve] == [1, 2, 3, 4] and all(r["loss"] != STALE_LOSS for r in curve)
