"""Does the physics-structured model learn spatial structure? A quick probe for training changes.

Trains a fresh ``physics-unet`` on random simulated patches (two label maps, small patches) and every
``--every`` steps prints the loss and, on one fixed held-back sample, the correlation and spread of the
predicted against the true log-T2 inside tissue. A model that learns shows the correlation rising
towards 1 and the predicted spread approaching the true one; the failure seen so far keeps the
predicted spread near 0 (constant maps).

    python benchmarks/physics_learning_probe.py --labelmaps DIR [--steps 200] [--freeze-film]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelmaps", required=True, help="folder of label maps")
    ap.add_argument("--maps", nargs="+", default=["synthseg_training_seg_01", "synthseg_training_seg_02"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--freeze-film", action="store_true", help="keep FiLM at identity")
    args = ap.parse_args(argv)

    import torch

    from tumsyn_bids.models.physics_net import PhysicsSynthNet, subject_condition, with_source
    from tumsyn_bids.training.data_sim import labelmap_files, stem
    from tumsyn_bids.training.physics_data import SimConfig, load_label_volume, make_batch, simulate_sample
    from tumsyn_bids.training.physics_train import MODEL_ARGS, PhysicsTrainConfig, losses

    torch.set_num_threads(args.threads)
    files = {stem(f): f for f in labelmap_files([args.labelmaps])}
    vols = [load_label_volume(files[m]) for m in args.maps]
    cfg = PhysicsTrainConfig(sim=SimConfig(size=args.size))
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = PhysicsSynthNet(**MODEL_ARGS).to(memory_format=torch.channels_last_3d)
    if args.freeze_film:
        for p in net.encoder.film.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=args.lr)
    probe = simulate_sample(vols[0], cfg.sim, np.random.default_rng(99), torch.Generator().manual_seed(1))
    probe_cond = with_source(subject_condition(torch.tensor([probe["field"]]), torch.tensor([probe["age"]]),
                                               torch.tensor([probe["sex"]])),
                             probe["src_protocol"], probe["src_contrast"])
    tissue = probe["maps"][0] > 0.05
    truth = np.log(probe["maps"][2][tissue].numpy())
    t0 = time.time()
    for step in range(args.steps + 1):
        batch = make_batch(vols, cfg.sim, 2, rng, gen)
        terms = losses(net, batch, cfg, rng, torch.device("cpu"), False)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if step % args.every == 0:
            with torch.no_grad():
                x = probe["x"][None].contiguous(memory_format=torch.channels_last_3d)
                pred = np.log(net.dense_maps(net.encode(x, probe_cond))["T2"][0][tissue].numpy())
            print(f"step {step:5d} loss {float(loss.detach()):.3f} log-T2 corr {np.corrcoef(pred, truth)[0, 1]:+.2f} "
                  f"spread {pred.std():.3f} (true {truth.std():.3f}) {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
