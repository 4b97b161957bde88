"""Resuming physics training continues the saved run exactly (issue 19, item 2).

``test_physics_training.py`` checks that a resumed run counts on from the saved step; these tests
check what was resumed: the weights a resumed run starts from are the saved ones (bit for bit), the
optimiser's moments and step counts come back, and a run interrupted at a checkpoint ends in the
same state as one that never stopped (model, optimiser and random streams all restored).
"""

from __future__ import annotations

import torch

from tumsyn_bids.training.physics_data import SimConfig
from tumsyn_bids.training.physics_train import PhysicsTrainConfig, train

torch.set_num_threads(1)


def _cfg(labelmap, steps: int, **changes) -> PhysicsTrainConfig:
    return PhysicsTrainConfig(labelmaps=[str(labelmap)], steps=steps, batch_size=1, threads=1, device="cpu",
                              checkpoint_every=2, sim=SimConfig(size=16), **changes)


def _state(run) -> dict:
    return torch.load(run / "state.pt", map_location="cpu", weights_only=False)


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        same = torch.equal(a[key], b[key])  # (no tensor dump in the failure message)
        assert same, f"{what}: {key} differs"


def _assert_same_optimizer(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys() and len(a["state"]) > 0
    for idx in a["state"]:
        _assert_same_tensors(a["state"][idx], b["state"][idx], f"optimizer state of parameter {idx}")


def test_resumed_run_starts_from_the_saved_weights_and_optimizer(labelmap, tmp_path):
    """Resume with a learning rate of zero: AdamW then leaves every weight as it was, so the weights
    after the first new step are exactly the ones the resumed run started from."""
    run = tmp_path / "run"
    train(_cfg(labelmap, 2), run, report=lambda m: None)
    saved = _state(run)
    assert saved["step"] == 2
    from tumsyn_bids.models.physics_net import PhysicsSynthNet

    torch.manual_seed(_cfg(labelmap, 2).seed)
    fresh = PhysicsSynthNet(**_cfg(labelmap, 2).model_args).state_dict()
    assert any(not torch.equal(fresh[k], saved["model"][k]) for k in fresh)  # two steps moved the weights

    messages: list[str] = []
    train(_cfg(labelmap, 3, lr=0.0, min_lr=0.0), run, report=messages.append)
    assert "resumed at step 2" in messages
    after = _state(run)
    assert after["step"] == 3
    _assert_same_tensors(after["model"], saved["model"], "weights after a zero-lr step")
    # the optimiser came back too: Adam's per-parameter step count went on from the saved one
    for idx, entry in after["optimizer"]["state"].items():
        assert float(entry["step"]) == float(saved["optimizer"]["state"][idx]["step"]) + 1 == 3.0


def test_interrupted_run_ends_where_an_uninterrupted_one_does(labelmap, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train(_cfg(labelmap, 4), straight, report=lambda m: None)
    train(_cfg(labelmap, 2), interrupted, report=lambda m: None)
    train(_cfg(labelmap, 4), interrupted, report=lambda m: None)
    a, b = _state(straight), _state(interrupted)
    assert a["step"] == b["step"] == 4
    assert (straight / "losses.jsonl").read_text().count("\n") == 4
    losses_a = [line.split('"sec"')[0] for line in (straight / "losses.jsonl").read_text().splitlines()]
    losses_b = [line.split('"sec"')[0] for line in (interrupted / "losses.jsonl").read_text().splitlines()]
    assert losses_a == losses_b  # same batches, same losses, step for step
    _assert_same_tensors(a["model"], b["model"], "final weights")
    _assert_same_optimizer(a["optimizer"], b["optimizer"])
    assert a["rng"] == b["rng"] and torch.equal(a["gen"], b["gen"])
