"""Searched mixed precision against uniform bit widths at equal BitOps, on the digits task.

    python -m benchmarks.mixed_precision --out docs/results/mixed-precision-digits.json \
        --plot docs/images/mixed-precision-digits.png [--seeds 3] [--work runs/mp-study]

Two mixed-precision supernets of ``configs/mixed-precision-digits.yaml``: the config's (widths and
bits searched jointly) and the same without channel search (bits only). The uniform networks are
one reference architecture (every width at its largest) with every quantized layer at 2, 3, 4 or 8
bits. For each of the budgets "BitOps of the uniform 2/3/4-bit network", the evolution searches
each supernet under ``bitops<=budget``; its pick is retrained. Every network is retrained from
scratch with the config's recipe under each seed and evaluated on the test split. Writes the
figures as JSON and the accuracy-vs-BitOps plot.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from supernet import pipeline
from supernet.arch import SearchSpace
from supernet.cost import CostModel
from supernet.pipeline.build import load_data, model_options, space_model
from supernet.pipeline.config import load_config, resolve_config_path
from supernet.quant import with_bits
from supernet.runtime.io import write_json

from .common import machine

CONFIG = "mixed-precision-digits"
UNIFORM = (2, 3, 4, 8)


def reference(space: SearchSpace) -> dict:
    """Every block choice at its first option, every width at its largest; bits set later."""
    return {label: space.n_options(label) - 1 if label.startswith("channel") else 0 for label in space.labels}


def retrain_and_evaluate(base: Path, work: Path, arch: dict, seed: int, threads: int) -> dict:
    """``arch`` retrained from scratch with the run's recipe and ``retrain.seed=seed``; its eval.json."""
    run = work
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    shutil.copy(base / "config.yaml", run / "config.yaml")
    (run / "arch.json").write_text(json.dumps(arch))
    pipeline.retrain(run, run / "arch.json", [f"seed={seed}", "progress=false", f"runtime.threads={threads}"])
    return pipeline.evaluate(run, threads=threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("runs/mp-study"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = args.work / "supernet"
    bits_only = args.work / "supernet-bits-only"
    for run, extra in ((base, []), (bits_only, ["space.options.channel_search=false"])):
        if not (run / "supernet" / "last.pt").exists():
            pipeline.train_supernet(run, CONFIG, ["supernet.progress=false", f"runtime.threads={args.threads}", *extra],
                                    resume=(run / "config.yaml").exists())
    cfg = load_config(base / "config.yaml")
    data = load_data(cfg)
    cost = CostModel(space_model(cfg, model_options(cfg, data)))
    space = cost.space
    ref = reference(space)
    uniform = {b: with_bits(space, ref, b) for b in UNIFORM}
    budgets = {b: cost.bitops(uniform[b]) for b in (2, 3, 4)}
    networks = {f"uniform {b}-bit": uniform[b] for b in UNIFORM}
    for kind, supernet in (("searched", base), ("searched bits only", bits_only)):
        for b, budget in budgets.items():
            run = args.work / f"{supernet.name}-search-{b}bit"
            if not (run / "search" / "best_arch.json").exists():
                if run.exists():
                    shutil.rmtree(run)
                shutil.copytree(supernet, run, ignore=shutil.ignore_patterns("search", "retrain"))
                pipeline.search(run, [f"constraints=[bitops<={budget}]", "progress=false",
                                      f"runtime.threads={args.threads}"])
            arch = json.loads((run / "search" / "best_arch.json").read_text())["arch"]
            networks[f"{kind}, budget of uniform {b}-bit"] = {**ref, **arch}  # bits only: the widest widths
    rows = {}
    for name, arch in networks.items():
        accs = []
        for seed in range(args.seeds):
            slug = name.replace(" ", "-").replace(",", "")
            work = args.work / "retrain" / f"{slug}-seed{seed}"
            if (work / "eval.json").exists():  # measured by an earlier, interrupted run of this script
                ev = json.loads((work / "eval.json").read_text())
            else:
                ev = retrain_and_evaluate(base, work, arch, seed, args.threads)
            accs.append(ev["top1"])
            print(f"{name} seed {seed}: test top-1 {ev['top1']:.4f}", flush=True)
        costs = cost.costs(arch)
        rows[name] = {"arch": arch, "bitops": costs["bitops"], "size": costs["size"], "flops": costs["flops"],
                      "top1": accs, "mean": statistics.mean(accs),
                      "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
    result = {"machine": machine(), "config": CONFIG, "seeds": args.seeds, "budgets": budgets, "networks": rows,
              "test_images": ev["n"], "seconds": time.perf_counter() - t0}
    write_json(args.out, result)
    if args.plot is not None:
        plot(rows, args.plot)
    for name, r in rows.items():
        print(f"{name:<46} {r['bitops'] / 1e6:8.3f}M BitOps  top-1 {r['mean']:.4f} ± {r['std']:.4f}")


def plot(rows: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for kind, color, marker in (("uniform", "C0", "o"), ("searched,", "C3", "*"), ("searched bits only", "C2", "^")):
        picked = [(r["bitops"], r["top1"]) for name, r in rows.items() if name.startswith(kind)]
        for bitops, accs in picked:
            ax.scatter([bitops / 1e6] * len(accs), [100 * a for a in accs], color=color, marker=marker, alpha=0.35, s=18)
        means = sorted((b / 1e6, 100 * statistics.mean(a)) for b, a in picked)
        label = {"searched,": "searched: widths and bits"}.get(kind, kind)
        ax.plot(*zip(*means), color=color, marker=marker, label=f"{label} (mean of seeds)")
    for name, r in rows.items():
        if name.startswith("uniform"):
            ax.annotate(name.replace("uniform ", ""), (r["bitops"] / 1e6, 100 * r["mean"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("MBitOps (MACs x weight bits x activation bits)")
    ax.set_ylabel("retrained test top-1 (%)")
    ax.set_title("digits: searched mixed precision vs uniform bit widths")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
