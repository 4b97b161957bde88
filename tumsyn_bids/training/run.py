"""One training run: build the data pool, run stage 1 and/or 2, export the model and its record."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from tumsyn_bids.training.config import TrainConfig


def _hardware() -> dict[str, Any]:
    import os

    import torch

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def _log_tail(path: Path, n: int, key: str = "loss") -> float | None:
    """Mean of ``key`` over the last ``n`` records of a JSON-lines loss log."""
    if not path.exists():
        return None
    values = [json.loads(x)[key] for x in path.read_text().splitlines() if x.strip()][-n:]
    return sum(values) / len(values) if values else None


def _text_dim_of(text) -> int:
    from tumsyn_bids.training.stage1 import _text_dim

    return _text_dim(text)


def build_pool(cfg: TrainConfig, rng):
    """The training pool the config asks for: simulated subjects or real BIDS pairs."""
    from tumsyn_bids.training.pool import FixedPool, SubjectPool

    if cfg.data.source == "bids":
        from tumsyn_bids.training.data_bids import load_bids_subjects

        if not cfg.data.bids_dir:
            from tumsyn_bids.errors import UsageError

            raise UsageError("data.source is 'bids' but no BIDS dataset was given")
        subjects = load_bids_subjects(Path(cfg.data.bids_dir), cfg.data.participant_label, cfg.data.crop_margin)
        return FixedPool(subjects, rng), None
    from tumsyn_bids.training.data_sim import SimulatedSubjects

    source = SimulatedSubjects(cfg.data)
    return SubjectPool(source.make_training_subject, cfg.data.pool_subjects, cfg.data.refresh_every, rng), source


def run_training(cfg: TrainConfig, out_dir: Path, *, stages: tuple[int, ...] = (1, 2), resume: bool = False,
                 progress: bool = True, export: Path | None = None) -> dict[str, Any]:
    """Train, then write ``model.pt`` (native checkpoint) and ``training.json`` in ``out_dir``."""
    import torch

    from tumsyn_bids.atomic import atomic_write_text
    from tumsyn_bids.models.checkpoint import save_native
    from tumsyn_bids.models.loading import make_random_bundle
    from tumsyn_bids.training.loop import load_checkpoint, seed_everything
    from tumsyn_bids.training.stage1 import train_stage1, zero_shot_accuracy
    from tumsyn_bids.training.stage2 import train_stage2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    t0 = time.time()
    rng = seed_everything(cfg.seed)
    pool, source = build_pool(cfg, rng)
    bundle = make_random_bundle(cfg.model, seed=cfg.seed)
    text, net = bundle.text_encoder, bundle.net
    record: dict[str, Any] = {"config": cfg.to_dict(), "seed": cfg.seed, "hardware": _hardware()}
    if source is not None:
        record["data_recipe"] = source.recipe()
    stage1_path = out_dir / "stage1.pt"
    if 1 in stages:
        text.train().requires_grad_(True)
        s1 = train_stage1(cfg, pool, text, out_dir, rng=rng, resume=resume, progress=progress)
        record["stage1"] = {"steps": s1["steps"], "final_loss": _log_tail(out_dir / "stage1_loss.jsonl", 10),
                            "final_acc": _log_tail(out_dir / "stage1_loss.jsonl", 10, "acc"),
                            "seconds": s1["seconds"]}
        eval_subjects = source.held_out_subjects(rng_seed=cfg.seed + 1) if source is not None else pool.subjects
        record["stage1"]["zero_shot"] = zero_shot_accuracy(text, s1["image_tower"], eval_subjects, cfg)
    elif stage1_path.exists():
        state = load_checkpoint(stage1_path)["model"]
        text.load_state_dict({k[len("text."):]: v for k, v in state.items() if k.startswith("text.")})
        previous = out_dir / "training.json"
        if previous.exists() and "stage1" in json.loads(previous.read_text()):
            record["stage1"] = json.loads(previous.read_text())["stage1"]
        else:
            from tumsyn_bids.training.stage1 import ImageTower

            tower = ImageTower(_text_dim_of(text))
            tower.load_state_dict({k[len("image."):]: v for k, v in state.items() if k.startswith("image.")})
            eval_subjects = source.held_out_subjects(rng_seed=cfg.seed + 1) if source is not None else pool.subjects
            record["stage1"] = {"steps": load_checkpoint(stage1_path)["step"],
                                "final_loss": _log_tail(out_dir / "stage1_loss.jsonl", 10),
                                "final_acc": _log_tail(out_dir / "stage1_loss.jsonl", 10, "acc"),
                                "zero_shot": zero_shot_accuracy(text, tower, eval_subjects, cfg)}
    text.eval().requires_grad_(False)
    if 2 in stages:
        s2 = train_stage2(cfg, pool, net, text, out_dir, rng=rng, resume=resume, progress=progress)
        record["stage2"] = s2
    net.eval()
    if (out_dir / "stage2_loss.jsonl").exists():
        record.setdefault("stage2", {})["final_loss_avg50"] = _log_tail(out_dir / "stage2_loss.jsonl", 50)
    spec = dict(bundle.spec)
    spec["input"] = "skull-stripped"
    spec["training"] = {"config": cfg.to_dict(), "seed": cfg.seed,
                        "held_out": list(cfg.data.held_out) if cfg.data.source != "bids" else [],
                        "data": cfg.data.source}
    model_path = Path(export) if export else out_dir / "model.pt"
    sha = save_native(model_path, spec, text, net)
    record.update({"model_file": str(model_path), "sha256": sha, "wall_seconds": time.time() - t0})
    atomic_write_text(out_dir / "training.json", json.dumps(record, indent=2, default=str))
    return record
