"""Ship gate: is a candidate checkpoint (or inference change) better than what ships today?

    python benchmarks/gate.py --real OLD.json NEW.json [--sim OLD.json NEW.json] [--tolerance 0.5]
    python benchmarks/gate.py --run --weights NEW.pt --real-dir DIR --labelmaps DIR [--old-weights OLD.pt]

Compares per task the masked PSNR of the model in two runs of ``benchmarks/real_quality.py``
(``--json``) and, optionally, of ``benchmarks/quality.py`` (``--json``; the ``refined`` method when
present, else ``model``). Prints both benchmarks' summary lines for the old and the new run, then one
line per task that got worse, and exits 1 when the new run is worse on the mean, or on any task by
more than ``--tolerance`` dB (default 0.5); 0 otherwise. ``--run`` first runs both benchmarks for
the old weights (default: the bundled ones) and the new ones, writing the JSON files to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def real_scores(path: Path) -> dict[str, float]:
    """task -> zero-shot masked PSNR of the model (real_quality.py JSON)."""
    rows = json.loads(Path(path).read_text())["rows"]
    return {r["task"]: float(r["model"]["psnr"]) for r in rows if "model" in r}


def real_summary(path: Path) -> str:
    sys.path.insert(0, str(HERE))
    from real_quality import summary_line

    return summary_line(json.loads(Path(path).read_text())["rows"])


def sim_scores(path: Path) -> dict[str, float]:
    """task -> mean masked PSNR over subjects of the model (quality.py JSON; 'refined' when present)."""
    rows = json.loads(Path(path).read_text())
    method = "refined" if any(r["method"] == "refined" for r in rows) else "model"
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["method"] == method:
            out.setdefault(r["task"], []).append(float(r["psnr_masked"]))
    return {k: sum(v) / len(v) for k, v in out.items()}


def sim_summary(path: Path) -> str:
    """``model ahead of every baseline on a/N tasks, mean gap to the best baseline c dB``."""
    rows = json.loads(Path(path).read_text())
    method = "refined" if any(r["method"] == "refined" for r in rows) else "model"
    tasks: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        tasks.setdefault(r["task"], {}).setdefault(r["method"], []).append(float(r["psnr_masked"]))
    wins, gaps = 0, []
    for methods in tasks.values():
        mean = {m: sum(v) / len(v) for m, v in methods.items()}
        best = max(v for m, v in mean.items() if m not in ("model", "refined"))
        wins += mean[method] > best
        gaps.append(mean[method] - best)
    return (f"{method}: ahead of every baseline on {wins}/{len(tasks)} tasks, mean gap to the best baseline "
            f"{sum(gaps) / max(1, len(gaps)):+.2f} dB")


def compare(old: dict[str, float], new: dict[str, float], tolerance: float) -> tuple[bool, list[str]]:
    """(passes, lines): worse on the mean, or on any shared task by more than ``tolerance`` dB, fails."""
    shared = sorted(set(old) & set(new))
    lines, ok = [], True
    if not shared:
        return False, ["no task in common"]
    mean_old = sum(old[t] for t in shared) / len(shared)
    mean_new = sum(new[t] for t in shared) / len(shared)
    lines.append(f"mean over {len(shared)} tasks: old {mean_old:.2f} dB, new {mean_new:.2f} dB "
                 f"({mean_new - mean_old:+.2f})")
    if mean_new < mean_old:
        ok = False
        lines.append("FAIL: worse on the mean")
    for t in shared:
        d = new[t] - old[t]
        if d < -tolerance:
            ok = False
            lines.append(f"FAIL: {t}: {old[t]:.2f} -> {new[t]:.2f} dB ({d:+.2f})")
    missing = sorted(set(old) - set(new))
    if missing:
        ok = False
        lines.append(f"FAIL: tasks without a new score: {', '.join(missing)}")
    return ok, lines


def run_benchmarks(args) -> tuple[tuple[Path, Path], tuple[Path, Path] | None]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    real, sim = [], []
    for tag, weights in (("old", args.old_weights), ("new", args.weights)):
        extra = ["--weights", weights] if weights else []
        path = out / f"real_{tag}.json"
        subprocess.run([sys.executable, str(HERE / "real_quality.py"), args.real_dir, "--json", str(path), *extra],
                       check=False)
        real.append(path)
        if args.labelmaps:
            path = out / f"sim_{tag}.json"
            subprocess.run([sys.executable, str(HERE / "quality.py"), "--labelmaps", args.labelmaps, "--refine",
                            "--json", str(path), *extra], check=True)
            sim.append(path)
    return (real[0], real[1]), ((sim[0], sim[1]) if sim else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", nargs=2, type=Path, metavar=("OLD", "NEW"), help="real_quality.py JSON files")
    ap.add_argument("--sim", nargs=2, type=Path, metavar=("OLD", "NEW"), help="quality.py JSON files")
    ap.add_argument("--tolerance", type=float, default=0.5, help="dB a single task may lose")
    ap.add_argument("--run", action="store_true", help="run the benchmarks first")
    ap.add_argument("--weights", help="--run: the candidate weights")
    ap.add_argument("--old-weights", help="--run: the weights to beat (default: bundled)")
    ap.add_argument("--real-dir", help="--run: folder of real evaluation scans")
    ap.add_argument("--labelmaps", help="--run: label maps for the simulated benchmark")
    ap.add_argument("--out", default="gate_runs", help="--run: where the JSON files go")
    args = ap.parse_args(argv)
    if args.run:
        if not (args.weights and args.real_dir):
            ap.error("--run needs --weights and --real-dir")
        args.real, args.sim = run_benchmarks(args)
    if not args.real:
        ap.error("give --real OLD NEW (or --run)")
    passed = True
    benches = [("real scans (benchmarks/real_quality.py)", args.real, real_summary, real_scores)]
    if args.sim:
        benches.append(("held-out simulated subjects (benchmarks/quality.py)", args.sim, sim_summary, sim_scores))
    for title, (old, new), summary, scores in benches:
        print(f"{title}:")
        print(f"  old: {summary(old)}\n  new: {summary(new)}")
        ok, lines = compare(scores(old), scores(new), args.tolerance)
        passed &= ok
        print("\n".join("  " + x for x in lines))
    print("gate: PASS" if passed else "gate: FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
