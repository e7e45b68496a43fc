"""NSGA-II's accuracy-versus-FLOPs front against random search, and its picks against the evolution, on digits.

    python -m benchmarks.pareto --out docs/results/pareto-digits.json --plot docs/images/pareto-digits.png \
        [--seeds 5] [--retrain-seeds 3] [--work runs/pareto-study] [--threads 1]

One supernet of ``configs/digits.yaml``. For each search seed, ``search.algorithm=nsga2
objectives=[error,flops]`` and random search score the same number of candidates (the config's
population x generations) without the config's FLOPs bound, so that the front spans the space;
the hypervolume of everything each has evaluated is compared after every 20 candidates, in the
normalised objectives NSGA-II reports (error 0..1, FLOPs over the space's range, reference point
error 1.0 and the largest FLOPs). Then three FLOPs budgets along seed 0's front (a quarter, a half
and three quarters of the way across its FLOPs range): the front's lowest-error member under each
(``retrain --pick flops<=B``) against the evolution's answer to ``constraints=[flops<=B]`` (its
own search of the same number of candidates per budget, seed 0). Each is retrained from scratch
with the config's recipe under each retrain seed and evaluated on the test split.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from supernet import pipeline
from supernet.cost import CostModel
from supernet.pipeline.build import load_data, model_options, space_model
from supernet.pipeline.config import load_config
from supernet.pipeline.retrain import pick_from_front
from supernet.runtime.io import write_json
from supernet.search.pareto import hypervolume

from .common import machine
from .mixed_precision import retrain_and_evaluate

CONFIG = "digits"
EVERY = 20  # candidates between hypervolume readings (the config's population)


def searched(base: Path, run: Path, overrides: list[str], threads: int) -> Path:
    """``run``: a copy of the supernet at ``base`` searched with ``overrides`` (kept if already there)."""
    if not (run / "search" / "best_arch.json").exists():
        if run.exists():
            shutil.rmtree(run)
        shutil.copytree(base, run, ignore=shutil.ignore_patterns("search", "retrain", ".replaced", ".lock"))
        pipeline.search(run, [*overrides, "progress=false", f"runtime.threads={threads}"])
    return run


def candidates(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "search" / "history.jsonl").read_text().splitlines()]
    return [r for r in rows if "arch" in r]


def volumes(rows: list[dict], span: tuple[float, float]) -> list[float]:
    """The hypervolume of the first 20, 40, ... candidates, in normalised (error, FLOPs)."""
    lo, hi = span
    points = [(r["top1_err"], (r["flops"] - lo) / (hi - lo)) for r in rows]
    return [hypervolume(points[:n], (1.0, 1.0)) for n in range(EVERY, len(points) + 1, EVERY)]


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--retrain-seeds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("runs/pareto-study"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = args.work / "supernet"
    if not (base / "supernet" / "last.pt").exists():
        pipeline.train_supernet(base, CONFIG, ["supernet.progress=false", f"runtime.threads={args.threads}"],
                                resume=(base / "config.yaml").exists())
    cfg = load_config(base / "config.yaml")
    n = cfg.search.population * cfg.search.generations
    r = CostModel(space_model(cfg, model_options(cfg, load_data(cfg)))).range()
    span = (r["flops_min"], r["flops_max"])
    runs = {"nsga2": [], "random": []}
    for seed in range(args.seeds):
        common = ["constraints=[]", f"seed={seed}"]
        runs["nsga2"].append(searched(base, args.work / f"nsga2-seed{seed}", [*common, "algorithm=nsga2",
                                                                               "objectives=[error,flops]"], args.threads))
        runs["random"].append(searched(base, args.work / f"random-seed{seed}", [*common, "algorithm=random",
                                                                                f"random_candidates={n}"], args.threads))
        print(f"seed {seed}: hypervolume nsga2 {volumes(candidates(runs['nsga2'][-1]), span)[-1]:.4f}, random "
              f"{volumes(candidates(runs['random'][-1]), span)[-1]:.4f}", flush=True)
    curves = {k: [volumes(candidates(run), span) for run in v] for k, v in runs.items()}
    front = json.loads((runs["nsga2"][0] / "search" / "pareto.json").read_text())
    flops = [m["costs"]["flops"] for m in front["front"]]
    budgets = [round(min(flops) + q * (max(flops) - min(flops))) for q in (0.25, 0.5, 0.75)]
    picks = []
    for budget in budgets:
        evolved = searched(base, args.work / f"evolution-{budget}", [f"constraints=[flops<={budget}]", "seed=0"],
                           args.threads)
        best = json.loads((evolved / "search" / "best_arch.json").read_text())
        chosen = pick_from_front(runs["nsga2"][0], f"flops<={budget}")
        row = {"budget": budget}
        for kind, arch, member in (("nsga2 pick", chosen["arch"], chosen), ("evolution", best["arch"], best)):
            accs = []
            for seed in range(args.retrain_seeds):
                work = args.work / "retrain" / f"{kind.split()[0]}-{budget}-seed{seed}"
                ev = json.loads((work / "eval.json").read_text()) if (work / "eval.json").exists() else \
                    retrain_and_evaluate(base, work, arch, seed, args.threads)
                accs.append(ev["top1"])
            flops_of = member["costs"]["flops"] if "costs" in member else member["flops"]
            row[kind] = {"arch": arch, "flops": flops_of, "supernet_top1": member["top1"], "test_top1": spread(accs)}
            print(f"budget {budget / 1e6:.3f}M {kind:<10} {flops_of / 1e6:.3f}M FLOPs: test top-1 "
                  f"{statistics.median(accs):.4f} ({', '.join(f'{a:.4f}' for a in accs)})", flush=True)
        picks.append(row)
    result = {"machine": machine(), "config": CONFIG, "seeds": args.seeds, "retrain_seeds": args.retrain_seeds,
              "candidates": n, "reference": {"error": 1.0, "flops": span[1]}, "flops_range": span,
              "hypervolume": {k: spread([c[-1] for c in v]) for k, v in curves.items()},
              "curves": curves, "front_seed0": front["front"], "picks": picks,
              "seconds": time.perf_counter() - t0}
    write_json(args.out, result)
    if args.plot is not None:
        plot(result, [candidates(run) for run in runs["random"]][0], args.plot)
    for k, v in result["hypervolume"].items():
        print(f"{k:<7} hypervolume after {n} candidates: median {v['median']:.4f} (min {v['min']:.4f}, max {v['max']:.4f})")


def plot(result: dict, random_rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, color in (("nsga2", "C3"), ("random", "C0")):
        curves = result["curves"][kind]
        xs = [EVERY * (i + 1) for i in range(len(curves[0]))]
        columns = list(zip(*curves))
        ax1.fill_between(xs, [min(c) for c in columns], [max(c) for c in columns], color=color, alpha=0.2)
        ax1.plot(xs, [statistics.median(c) for c in columns], color=color, marker="o", ms=3,
                 label=f"{'NSGA-II' if kind == 'nsga2' else 'random search'} (median, min-max of {len(curves)} seeds)")
    ax1.set_xlabel("candidates evaluated")
    ax1.set_ylabel("hypervolume (error, FLOPs; normalised)")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right")
    ax2.scatter([r["flops"] / 1e6 for r in random_rows], [100 * r["top1_err"] for r in random_rows], s=8, color="C0",
                alpha=0.35, label="random search, seed 0")
    front = sorted(result["front_seed0"], key=lambda m: m["costs"]["flops"])
    ax2.step([m["costs"]["flops"] / 1e6 for m in front], [100 * m["top1_err"] for m in front], where="post",
             color="C3", marker="o", ms=3, label="NSGA-II front, seed 0")
    for row in result["picks"]:
        ax2.axvline(row["budget"] / 1e6, color="0.5", ls=":", lw=1)
    ax2.set_xlabel("MFLOPs (multiply-accumulates)")
    ax2.set_ylabel("supernet top-1 error on the validation split (%)")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper right")
    fig.suptitle(f"digits: NSGA-II against random search at {result['candidates']} candidates")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
