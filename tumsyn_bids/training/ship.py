"""Turn a training run into the bundled weights: ``python -m tumsyn_bids.training.ship RUN_DIR``.

Reads ``RUN_DIR/model.pt`` (native checkpoint) and ``RUN_DIR/training.json``; stores large floating
tensors (the token embedding) in float16 to keep the package small (they are cast back to float32
when loaded), writes ``tumsyn_bids/data/models/tumsyn-small.pt`` and the training record
``tumsyn-small.json`` (with the shipped file's sha256) next to it. Both writes are atomic.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

HALF_ABOVE = 1_000_000  # elements; smaller tensors stay float32


def shrink(state: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() and v.numel() > HALF_ABOVE else v)
            for k, v in state.items()}


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The training config without the trainer's local paths: label maps are kept by name only
    (the data recipe lists the phantoms used), so the shipped record says nothing about one machine."""
    data = dict(config.get("data", {}))
    if data.get("labelmaps"):
        data["labelmaps"] = [Path(str(p)).name for p in data["labelmaps"]]
    return {**config, "data": data}


def ship(run_dir: Path, dest: Path | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from tumsyn_bids.atomic import atomic_write_text
    from tumsyn_bids.models.checkpoint import atomic_torch_save, safe_load

    run_dir = Path(run_dir)
    dest = dest or Path(str(resources.files("tumsyn_bids") / "data" / "models" / "tumsyn-small.pt"))
    obj = safe_load(run_dir / "model.pt")
    obj["text_encoder"] = shrink(obj["text_encoder"])
    obj["synthesis"] = shrink(obj["synthesis"])
    record = json.loads((run_dir / "training.json").read_text())
    record["config"] = portable_config(record.get("config", {}))
    training = obj["spec"].get("training", {})
    if "config" in training:
        obj["spec"]["training"] = {**training, "config": portable_config(training["config"])}
    if extra:
        obj["spec"].update(extra.get("spec", {}))
        record.update({k: v for k, v in extra.items() if k != "spec"})
    sha = atomic_torch_save(obj, dest)
    record.update({"shipped_file": dest.name, "sha256": sha, "storage": "float16 for tensors > 1M elements"})
    atomic_write_text(dest.with_suffix(".json"), json.dumps(record, indent=2, default=str))
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--dest", type=Path, default=None)
    ap.add_argument("--window", type=int, default=None, help="inference window to record in the spec")
    args = ap.parse_args()
    extra = {"spec": {"inference": {"window": args.window}}} if args.window else None
    record = ship(args.run_dir, args.dest, extra)
    print(f"{record['shipped_file']}: sha256 {record['sha256']}")


if __name__ == "__main__":
    main()
