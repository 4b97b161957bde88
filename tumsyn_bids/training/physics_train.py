"""Train the physics-structured ``tumsyn-small`` on patches simulated from label maps.

    tumsyn train --labelmaps DIR --out RUN_DIR [--init bundled] [--steps N | --time-budget S] [--resume]

Losses per sample (inside a border of ``margin`` voxels, where the U-Net sees context):
L1 on proton density everywhere; L1 on log T1, log T2, log T2* where the target has tissue; L1 on
the gadolinium and susceptibility maps; and L1 on images rendered from predicted and true maps
for ``render_targets`` random target protocols (normalised by the true image's 99th percentile).
Checkpoints (model, optimiser, step, random states, loss log) are written atomically every
``checkpoint_every`` steps to RUN_DIR; a rerun with the same RUN_DIR resumes. ``export`` writes
the native checkpoint and training record that :mod:`tumsyn_bids.training.ship` packages.
The run sizes itself to the device: on CUDA a bigger batch and patch, and ``workers`` processes
simulating batches (each loads its share of the label maps) so that the GPU is not starved.
``time_budget`` (seconds) fixes the number of steps from the rate measured over the first steps, so
that the learning-rate schedule ends when the budget does (how a lent GPU's minutes are used).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tumsyn_bids.training.physics_data import SimConfig, load_label_volume, make_batch, random_target_protocol

log = logging.getLogger(__name__)

DEFAULT_HELD_OUT = ("synthseg_training_seg_15", "synthseg_training_seg_16", "synthsr_brain5")
# New runs upsample by resize-convolution: the shipped weights (transposed convolutions) show a 2-voxel
# checkerboard on real scans.
MODEL_ARGS = {"in_channels": 1, "widths": [8, 24, 48, 96], "feat_dim": 32, "head_hidden": [64, 64],
              "upsample": "trilinear"}


@dataclass
class PhysicsTrainConfig:
    labelmaps: list[str] = field(default_factory=list)
    held_out: list[str] = field(default_factory=lambda: list(DEFAULT_HELD_OUT))
    steps: int = 4000
    batch_size: int = 2
    lr: float = 2e-4  # 1e-3 collapsed to constant maps (benchmarks/physics_learning_probe.py); 2e-4 learns
    min_lr: float = 2e-5
    warmup: int = 100
    weight_decay: float = 1e-4
    margin: int = 4
    render_targets: int = 2
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 50
    device: str = "auto"
    workers: int = 0  # simulation processes; 0 = simulate in the training process
    time_budget: float = 0.0  # seconds; > 0: steps = what fits, measured after the first steps
    amp: bool = False  # bf16 autocast (CUDA only); the model is small, fp32/TF32 is the safe default
    model_args: dict[str, Any] = field(default_factory=lambda: dict(MODEL_ARGS))
    init: str = ""  # "" = random weights; "bundled" or a weights file: continue that model (fresh optimiser)
    lineage: dict[str, Any] = field(default_factory=dict)  # what the init model had seen (cumulative record)
    sim: SimConfig = field(default_factory=SimConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PhysicsTrainConfig":
        d = dict(d)
        sim = SimConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("sim", {}).items()})
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__}, sim=sim)


def labelmap_files(entries: list[str], held_out: list[str]) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files) among the label maps the entries name (files or folders)."""
    from tumsyn_bids.training.data_sim import is_held_out
    from tumsyn_bids.training.data_sim import labelmap_files as find

    files = find(entries)
    train = [f for f in files if not is_held_out(f, held_out)]
    held = [f for f in files if is_held_out(f, held_out)]
    return train, held


def init_weights(init: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(model_args, state_dict, lineage) of the model a run continues: ``bundled`` (the shipped
    ``tumsyn-small``) or a native weights file. ``lineage`` is what that model had already seen
    (steps, patches, voxels, runs), read from its training record, so records stay cumulative."""
    from tumsyn_bids.models.loading import load_model

    bundle = load_model("tumsyn-small", None if init == "bundled" else init, device="cpu")
    args = {k: v for k, v in bundle.net.config.items() if k != "cond_dim"}
    state = {k: v.float() if v.is_floating_point() else v for k, v in bundle.net.state_dict().items()}
    record_path = Path(str(bundle.path)).with_suffix(".json")
    lineage: dict[str, Any] = {"init": init, "sha256": bundle.sha256}
    if record_path.is_file():
        rec = json.loads(record_path.read_text())
        lineage.update(cumulative_from_record(rec))
    return args, state, lineage


def cumulative_from_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Cumulative steps/patches/voxels/runs of a training record (older records: from its own config)."""
    if "cumulative" in rec:
        return dict(rec["cumulative"])
    cfg = rec.get("config", {})
    steps = int(rec.get("steps", 0))
    batch, size = int(cfg.get("batch_size", 1)), int(cfg.get("sim", {}).get("size", 0))
    return {"steps": steps, "patches": steps * batch, "voxels": steps * batch * size**3,
            "wall_seconds": float(rec.get("wall_seconds", 0.0)), "runs": 1}


def size_to_device(cfg: PhysicsTrainConfig, device: torch.device) -> PhysicsTrainConfig:
    """On a GPU: bigger patches and batches (minutes there are hours of a laptop CPU)."""
    if device.type != "cuda":
        return cfg
    import os

    free, _ = torch.cuda.mem_get_info(device)
    batch = 8 if free > 40e9 else 4
    workers = cfg.workers or max(1, min(14, (os.cpu_count() or 2) - 2))
    return dataclasses.replace(cfg, batch_size=max(cfg.batch_size, batch), workers=workers,
                               sim=dataclasses.replace(cfg.sim, size=max(cfg.sim.size, 64)))


class SimulatedBatches(torch.utils.data.IterableDataset):
    """Endless simulated batches. In a DataLoader worker, each worker loads its own share of the
    label maps (loading is the slow part of start-up) and draws from its own seeded stream."""

    def __init__(self, files: list[Path], sim: SimConfig, batch: int, seed: int, start_step: int):
        self.files, self.sim, self.batch, self.seed, self.start_step = files, sim, batch, seed, start_step

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, n = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            torch.set_num_threads(1)
        mine = self.files[wid::n] or [self.files[wid % len(self.files)]]
        volumes = [load_label_volume(f) for f in mine]
        rng = np.random.default_rng([self.seed, wid, self.start_step])
        gen = torch.Generator().manual_seed(hash((self.seed, wid, self.start_step)) % 2**62)
        while True:
            yield make_batch(volumes, self.sim, self.batch, rng, gen)





def lr_at(step: int, cfg: PhysicsTrainConfig) -> float:
    from tumsyn_bids.training.schedule import cosine_lr

    return cosine_lr(step, base=cfg.lr, min_lr=cfg.min_lr, warmup=cfg.warmup, total=cfg.steps)


def losses(net, batch: dict, cfg: PhysicsTrainConfig, rng: np.random.Generator, device: torch.device,
           amp: bool) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (see module docstring)."""
    from tumsyn_bids.models.physics_net import subject_condition, with_source

    x = batch["x"].to(device).contiguous(memory_format=torch.channels_last_3d)
    cond = subject_condition(batch["field"].to(device), batch["age"].to(device), batch["sex"].to(device))
    cond = torch.cat([with_source(cond[b:b + 1], p, c) for b, (p, c) in
                      enumerate(zip(batch["src_protocol"], batch["src_contrast"], strict=False))])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        feat = net.encode(x, cond)
        pred = net.dense_maps(feat)
    m = cfg.margin
    inner = (slice(None), slice(m, -m or None), slice(m, -m or None), slice(m, -m or None))
    gt = batch["maps"].to(device)
    weight = batch["weight"].to(device)[inner]
    tissue = (gt[:, 0][inner] > 0.05).float()
    n_tissue = tissue.sum().clamp_min(1.0)
    p = {k: v[inner] for k, v in pred.items()}
    g = {"PD": gt[:, 0][inner], "T1": gt[:, 1][inner], "T2": gt[:, 2][inner], "T2star": gt[:, 3][inner],
         "GdR1": gt[:, 4][inner], "Susceptibility": gt[:, 5][inner]}
    out = {"pd": ((p["PD"] - g["PD"]).abs() * weight).sum() / weight.sum().clamp_min(1.0)}
    for key, name in (("T1", "t1"), ("T2", "t2"), ("T2star", "t2s")):
        diff = (torch.log(p[key]) - torch.log(g[key].clamp_min(1e-3))).abs()
        out[name] = (diff * tissue).sum() / n_tissue
    out["gd"] = ((p["GdR1"] - g["GdR1"]).abs() * tissue).sum() / n_tissue * 0.3
    out["sus"] = ((p["Susceptibility"] - g["Susceptibility"]).abs() * tissue).sum() / n_tissue
    render = []
    for b in range(x.shape[0]):
        for _ in range(cfg.render_targets):
            protocol, contrast = random_target_protocol(float(batch["field"][b]), rng)
            pb = {k: v[b] for k, v in p.items()}
            gb = {k: v[b] for k, v in g.items()}
            img_t = net.render(gb, protocol, contrast)
            img_p = net.render(pb, protocol, contrast)
            sel = tissue[b] > 0
            scale = (torch.quantile(img_t[sel][:20000], 0.99).clamp_min(1e-4) if sel.any()
                     else img_t.max().clamp_min(1e-4))
            render.append(((img_p - img_t).abs() * weight[b]).sum() / weight[b].sum().clamp_min(1.0) / scale)
    out["render"] = 3.0 * torch.stack(render).mean()
    return out


def drop_log_records_after(log_path: Path, step: int) -> None:
    """Keep only the loss records up to ``step`` (a killed run may have logged steps past its last
    checkpoint; the resumed run logs them again)."""
    if not log_path.is_file():
        return
    from tumsyn_bids.atomic import atomic_write_text

    lines = [x for x in log_path.read_text().splitlines() if x.strip()]
    kept = [x for x in lines if json.loads(x).get("step", 0) <= step]
    if len(kept) != len(lines):
        atomic_write_text(log_path, "".join(x + "\n" for x in kept))


def _save_state(path: Path, net, opt, step: int, rng: np.random.Generator, gen: torch.Generator,
                cfg: PhysicsTrainConfig, wall: float, seen: dict[str, int]) -> None:
    from tumsyn_bids.models.checkpoint import atomic_torch_save

    atomic_torch_save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                       "rng": json.dumps(rng.bit_generator.state), "gen": gen.get_state(),
                       "config": json.dumps(cfg.to_dict()), "wall_seconds": wall, "seen": dict(seen)}, path)


def train(cfg: PhysicsTrainConfig, out_dir: Path, *, resume: bool = True,
          report: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) in ``out_dir``; returns a summary dict. Writes ``state.pt`` and ``losses.jsonl``."""
    from tumsyn_bids.models.physics_net import PhysicsSynthNet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from tumsyn_bids.inference.device import resolve_device

    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    cfg = size_to_device(cfg, device)
    train_files, held = labelmap_files(cfg.labelmaps, cfg.held_out)
    if not train_files:
        from tumsyn_bids.errors import UsageError

        raise UsageError(f"no training label maps found in {cfg.labelmaps}")
    report(f"label maps: {len(train_files)} for training, {len(held)} held out ({', '.join(p.name for p in held)})")
    torch.manual_seed(cfg.seed)
    state_path = out_dir / "state.pt"
    init_state = None
    if cfg.init and not (resume and state_path.exists()):
        model_args, init_state, lineage = init_weights(cfg.init)
        cfg = dataclasses.replace(cfg, model_args=model_args, lineage=lineage)
        report(f"continuing {cfg.init} weights (sha256 {lineage['sha256'][:12]}, "
               f"{lineage.get('steps', 0)} steps seen before)")
    net = PhysicsSynthNet(**cfg.model_args).to(device).to(memory_format=torch.channels_last_3d)
    if init_state is not None:
        net.load_state_dict(init_state)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, wall = 0, 0.0
    seen = {"patches": 0, "voxels": 0}  # what this run has trained on (the lineage adds earlier runs)
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, wall = int(state["step"]), float(state.get("wall_seconds", 0.0))
        rng.bit_generator.state = json.loads(state["rng"])
        gen.set_state(state["gen"].cpu())  # map_location moved it to the training device
        seen = dict(state.get("seen", seen))
        drop_log_records_after(out_dir / "losses.jsonl", step)
        report(f"resumed at step {step}")
    amp = cfg.amp and device.type == "cuda"
    log_path = out_dir / "losses.jsonl"
    if cfg.workers > 0:
        loader = torch.utils.data.DataLoader(SimulatedBatches(train_files, cfg.sim, cfg.batch_size, cfg.seed, step),
                                             batch_size=None, num_workers=cfg.workers, prefetch_factor=4,
                                             persistent_workers=True)
        batches = iter(loader)
        next_batch = lambda: next(batches)  # noqa: E731
        report(f"simulating with {cfg.workers} worker processes")
    else:
        volumes = [load_label_volume(f) for f in train_files]
        next_batch = lambda: make_batch(volumes, cfg.sim, cfg.batch_size, rng, gen)  # noqa: E731
    report(f"device {device}, batch {cfg.batch_size} x {cfg.sim.size}^3, lr {cfg.lr:g}")
    t_start, start_step, planned = time.perf_counter(), step, cfg.time_budget <= 0
    t_last, t_rate = t_start, t_start  # the rate is measured from the 5th step (after start-up)
    while step < cfg.steps:
        t_fetch = time.perf_counter()
        batch = next_batch()
        t0 = time.perf_counter()
        if step - start_step == 5:
            t_rate = t_fetch
        if not planned and (step - start_step >= 25 or t0 - t_start > 90):
            rate = (step - start_step - 5) / max(t_fetch - t_rate, 1e-6) if step - start_step > 5 else 0.0
            left = cfg.time_budget - (t_fetch - t_start)
            cfg = dataclasses.replace(cfg, steps=step + max(1, int(left * rate * 0.97)))
            planned = True
            report(f"time budget {cfg.time_budget:.0f} s: {cfg.steps} steps in all")
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        terms = losses(net, batch, cfg, rng, device, amp)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        wall += time.perf_counter() - t_fetch
        seen["patches"] += int(batch["x"].shape[0])
        seen["voxels"] += int(batch["x"][0].numel()) * int(batch["x"].shape[0])
        record = {"step": step, "loss": float(loss.detach()),
                  **{k: round(float(v.detach()), 5) for k, v in terms.items()},
                  "lr": lr_at(step - 1, cfg), "sec": round(time.perf_counter() - t_fetch, 3),
                  "data": round(t0 - t_fetch, 3)}
        with open(log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        over = cfg.time_budget > 0 and time.perf_counter() - t_start > cfg.time_budget
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or over:
            _save_state(state_path, net, opt, step, rng, gen, cfg, wall, seen)
        if time.perf_counter() - t_last > 30 or step == cfg.steps:
            t_last = time.perf_counter()
            report(f"step {step}/{cfg.steps} loss {record['loss']:.4f} "
                   + " ".join(f"{k} {record[k]:.3f}" for k in terms) + f" ({record['sec']:.2f} s/step)")
        if over:
            report(f"time budget spent at step {step}")
            break
    return {"steps": step, "wall_seconds": wall, "device": str(device), "train_files": [p.name for p in train_files],
            "held_out": [p.name for p in held], "config": cfg}


def export(out_dir: Path, dest: Path | None = None) -> dict[str, Any]:
    """Write ``model.pt`` (native checkpoint: spec + weights) and ``training.json`` from ``state.pt``."""
    from tumsyn_bids.models.checkpoint import save_native
    from tumsyn_bids.models.loading import PUBLISHED_NORMALISATION, physics_spec
    from tumsyn_bids.models.physics_net import PhysicsSynthNet, PromptConditioner

    out_dir = Path(out_dir)
    state = torch.load(out_dir / "state.pt", map_location="cpu", weights_only=False)
    cfg = PhysicsTrainConfig.from_dict(json.loads(state["config"]))
    net = PhysicsSynthNet(**cfg.model_args)
    net.load_state_dict(state["model"])
    spec = physics_spec("tumsyn-small", cfg.model_args)
    spec["normalisation"] = dict(PUBLISHED_NORMALISATION)
    losses_log = [json.loads(x) for x in (out_dir / "losses.jsonl").read_text().splitlines() if x.strip()]
    losses_log = [r for r in losses_log if r["step"] <= state["step"]]
    tail = losses_log[-200:]
    mean_tail = ({k: float(np.mean([r[k] for r in tail])) for k in tail[0] if k not in ("step", "lr", "sec", "data")}
                 if tail else {})
    from tumsyn_bids.training.data_sim import stem

    train_files, held = labelmap_files(cfg.labelmaps, cfg.held_out)
    seen = state.get("seen") or {"patches": int(state["step"]) * cfg.batch_size,
                                 "voxels": int(state["step"]) * cfg.batch_size * cfg.sim.size ** 3}
    before = cfg.lineage or {}
    cumulative = {"steps": int(before.get("steps", 0)) + int(state["step"]),
                  "patches": int(before.get("patches", 0)) + int(seen["patches"]),
                  "voxels": int(before.get("voxels", 0)) + int(seen["voxels"]),
                  "wall_seconds": round(float(before.get("wall_seconds", 0.0))
                                        + float(state.get("wall_seconds", 0.0)), 1),
                  "runs": int(before.get("runs", 0)) + 1}
    spec["training"] = {"recipe": "physics-structured, simulated label-map patches", "steps": int(state["step"]),
                        "seed": cfg.seed}
    dest = Path(dest or out_dir / "model.pt")
    sha = save_native(dest, spec, PromptConditioner(), net)
    record = {
        "model": "tumsyn-small",
        "architecture": "physics-unet",
        "config": {**cfg.to_dict(), "labelmaps": [Path(p).name for p in cfg.labelmaps]},
        "data_recipe": {"labelmaps_used": [stem(p) for p in train_files],
                        "held_out": sorted(set(cfg.held_out) | {stem(p) for p in held}),
                        "simulation": dataclasses.asdict(cfg.sim)},
        "hardware": {"platform": platform.platform(), "torch": torch.__version__,
                     "device": "cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu",
                     "threads": cfg.threads},
        "steps": int(state["step"]),
        "wall_seconds": round(float(state.get("wall_seconds", 0.0)), 1),
        "continued_from": {k: v for k, v in before.items() if k in ("init", "sha256")} or None,
        "cumulative": cumulative,
        "final_losses_mean_last_200": mean_tail,
        "loss_curve": [{k: r[k] for k in ("step", "loss")} for r in losses_log[:: max(1, len(losses_log) // 100)]],
        "model_file": dest.name,
        "sha256": sha,
    }
    from tumsyn_bids.atomic import atomic_write_text

    atomic_write_text(out_dir / "training.json", json.dumps(record, indent=2, default=str))
    return record


def resumed_config(out_dir: Path, **changes: Any) -> PhysicsTrainConfig | None:
    """The saved run's own config with ``changes`` applied (``None`` values ignored), or None
    when ``out_dir`` holds no training state. A resumed run keeps its model, data recipe and seed."""
    state_path = Path(out_dir) / "state.pt"
    if not state_path.is_file():
        return None
    saved = torch.load(state_path, map_location="cpu", weights_only=False)
    cfg = PhysicsTrainConfig.from_dict(json.loads(saved["config"]))
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


