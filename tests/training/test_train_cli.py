"""``tumsyn train`` on a tiny simulated BIDS dataset: runs, exports a loadable model, resumes."""

from __future__ import annotations

import json

import torch
import typer
from typer.testing import CliRunner

from tumsyn_bids.cli.train_cmd import train

from .conftest import write_bids

torch.set_num_threads(1)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(train)
    return app


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def test_train_on_bids_pairs_then_resume(tiny_bids, tiny_config, tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    args = [str(tiny_bids), "--config", str(tiny_config), "--out", str(out), "--no-progress", "--seed", "3"]
    first = runner.invoke(_app(), args + ["--steps", "2"])
    assert first.exit_code == 0, first.output
    assert _steps(out / "stage2_loss.jsonl") == [1, 2]
    ckpt = torch.load(out / "stage2.pt", weights_only=True)
    assert ckpt["step"] == 2
    record = json.loads((out / "training.json").read_text())
    assert record["config"]["data"]["source"] == "bids" and record["seed"] == 3
    assert record["stage1"]["steps"] == 1

    from tumsyn_bids.models.loading import load_model

    bundle = load_model("tumsyn-small", weights=out / "model.pt")
    assert bundle.spec["input"] == "skull-stripped"
    assert bundle.sha256 == record["sha256"]

    second = runner.invoke(_app(), args + ["--steps", "4", "--resume"])
    assert second.exit_code == 0, second.output
    assert _steps(out / "stage2_loss.jsonl") == [1, 2, 3, 4]  # continued, not restarted
    assert torch.load(out / "stage2.pt", weights_only=True)["step"] == 4
    # the resumed run trained the network further: exported weights changed
    assert json.loads((out / "training.json").read_text())["sha256"] != record["sha256"]

    from tumsyn_bids.training.ship import ship

    dest = tmp_path / "shipped" / "tumsyn-small.pt"
    shipped = ship(out, dest=dest)
    assert json.loads(dest.with_suffix(".json").read_text())["sha256"] == shipped["sha256"]
    small = load_model("tumsyn-small", weights=dest)
    full = load_model("tumsyn-small", weights=out / "model.pt")
    emb_small = small.text_encoder.token_embedding.weight
    emb_full = full.text_encoder.token_embedding.weight
    assert emb_small.dtype == torch.float32 and torch.equal(emb_small, emb_full.half().float())
    assert dest.stat().st_size < 0.7 * (out / "model.pt").stat().st_size


def test_bids_pairs_get_prompts_from_sidecars(tiny_bids):
    from tumsyn_bids.prompts import parse_prompt
    from tumsyn_bids.training.data_bids import load_bids_subjects

    subjects = load_bids_subjects(tiny_bids)
    assert [s.name for s in subjects] == ["sub-01", "sub-02"]
    first = subjects[0]
    assert [im.contrast for im in first.images] == ["T1w", "T2w"]
    assert all(im.data.shape == first.mask.shape for im in first.images)  # registered onto one grid
    t2 = parse_prompt(first.images[1].prompt)
    assert t2.modality == "T2w" and t2.field_strength == 3.0 and t2.age == 30 and t2.sex == "M"
    assert t2.te_ms is not None and t2.te_ms > 50  # seconds in the sidecar became ms
    assert 0.0 <= first.images[1].data.min() and first.images[1].data.max() <= 1.0


def test_no_pairs_is_a_clear_error(tmp_path, tiny_config):
    ds = write_bids(tmp_path / "ds", {"01": ["T1w"], "02": ["T2w"]})
    res = CliRunner().invoke(_app(), [str(ds), "--config", str(tiny_config), "--out", str(tmp_path / "o"),
                                      "--no-progress"])
    assert res.exit_code == 66
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no session has two or more" in lines[0] and str(ds) in lines[0]


def test_bad_config_key_is_usage_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[stage2]\nsteeps = 3\n")
    res = CliRunner().invoke(_app(), ["--config", str(bad), "--out", str(tmp_path / "o"), "--no-progress"])
    assert res.exit_code == 64 and "stage2.steeps" in res.output
