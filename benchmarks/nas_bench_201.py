"""Evolution, random search and aging evolution on NAS-Bench-201, scored by table look-up (no training).

    OMP_NUM_THREADS=1 python -m benchmarks.nas_bench_201 --table ../shared/data/nas-bench-201/nats_bench.csv \
        --out docs/results/nas-bench-201-DATE.json [--seeds 30] [--budgets 50,100,200,500,1000]

The table is a NAS-Bench-201 CSV (``ArchitectureString`` and the 200-epoch test accuracies on
CIFAR-10, CIFAR-100 and ImageNet16-120); the user gives its path, and nothing of it is stored but
the figures below. It has no validation accuracy, so each search's fitness is the table's test
accuracy of the dataset searched: the table is the query oracle, as regularized-evolution and
NAS-Bench-201 studies do when only test accuracy is available. A search's result at a budget of B
queries is the best test accuracy among its first B evaluated architectures (each evaluated once:
the library never evaluates a seen architecture again). Every search runs generation after
generation until it has evaluated the largest budget; a generation whose tries all met seen
architectures adds none (counted as ``empty_generations``). All three start from the same random
population at a seed (the same RNG draws), so at 50 queries they agree exactly.

Each algorithm is the library's own search (``make_search``) over the ``nas-bench-201`` space with
its evaluator replaced by the look-up: ``evolution`` the SPOS evolution (population 50, top-10
parents, 25 mutations with p=0.1 per edge and 25 crossovers a generation), ``random`` uniform
random search, ``aging`` regularized evolution (population 50, tournament of 10, one child a cycle).
For every budget the script reports, per algorithm and dataset, the mean, standard deviation and
quartiles over the seeds of the best test accuracy found, the share of seeds that found the
table's optimum, and the two-sided Mann-Whitney U p-value of each evolution against random search.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import statistics
import sys
import time
from pathlib import Path

from scipy.stats import mannwhitneyu

from supernet import SearchSpace
from supernet.cost import CostModel
from supernet.pipeline.rank import COLUMNS, read_table
from supernet.runtime.io import write_json
from supernet.search.config import SearchConfig
from supernet.search.nsga2 import make_search
from supernet.spaces import create

from .common import machine

SETTINGS = {"evolution": dict(population=50, topk=10, mutations=25, crossovers=25, mutation_prob=0.1),
            "random": dict(population=50),
            "aging": dict(population=50, sample_size=10, mutations=1)}


def search_once(algorithm: str, seed: int, budget: int, accuracy: dict, space: SearchSpace,
                cost: CostModel) -> tuple[list[float], int]:
    """The table accuracy of each architecture ``algorithm`` evaluates, in order, up to ``budget``,
    and how many generations found no unseen candidate (their warnings are counted, not printed)."""
    def look_up(arch: dict) -> dict:
        err = 1 - accuracy[space.encode(arch)]
        return {"top1_err": err, "top5_err": err}

    cfg = SearchConfig(algorithm=algorithm, generations=10 * budget, random_candidates=budget, seed=seed,
                       progress=False, **SETTINGS[algorithm])
    search = make_search(space, look_up, cfg, cost)
    empty = 0
    with contextlib.redirect_stderr(io.StringIO()):
        while len(search.results) < budget and not search.done:  # generations until the budget is spent
            empty += not search.step()
    return [r["top1"] for r in search.results[:budget]], empty


def quartiles(xs: list[float]) -> list[float]:
    return [round(q, 4) for q in statistics.quantiles(xs, n=4, method="inclusive")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", required=True, help="a NAS-Bench-201 CSV (e.g. ../shared/data/nas-bench-201/nats_bench.csv)")
    p.add_argument("--out", required=True, help="the JSON written (docs/results/nas-bench-201-DATE.json)")
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--budgets", default="50,100,200,500,1000")
    p.add_argument("--datasets", default=",".join(COLUMNS), help=f"any of {', '.join(COLUMNS)}")
    args = p.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    datasets = args.datasets.split(",")
    model = create("nas-bench-201")
    space, cost = SearchSpace(model), CostModel(model)
    t0 = time.perf_counter()
    result = {"machine": machine(), "command": " ".join(["python -m benchmarks.nas_bench_201", *(argv or sys.argv[1:])]),
              "date": datetime.date.today().isoformat(), "seeds": list(range(args.seeds)), "budgets": budgets,
              "settings": SETTINGS, "fitness": "the table's test accuracy of the dataset searched (query oracle)",
              "datasets": {}}
    for dataset in datasets:
        accuracy = read_table(Path(args.table), COLUMNS[dataset], space)
        assert len(accuracy) == space.size, f"the table has {len(accuracy)} of the {space.size} architectures"
        optimum = max(accuracy.values()) * 100
        found, empty = {}, {}
        for a in SETTINGS:
            done = [search_once(a, seed, max(budgets), accuracy, space, cost) for seed in range(args.seeds)]
            found[a], empty[a] = [run for run, _ in done], sum(e for _, e in done)
        rows = {}
        for a, runs in found.items():
            rows[a] = {"empty_generations": empty[a]}
            for b in budgets:
                best = [100 * max(run[:b]) for run in runs]
                row = {"mean": round(statistics.mean(best), 4), "std": round(statistics.stdev(best), 4),
                       "quartiles": quartiles(best), "found_optimum": sum(abs(x - optimum) < 1e-9 for x in best),
                       "evaluated": min(len(run[:b]) for run in runs)}
                if a != "random":
                    random_best = [100 * max(run[:b]) for run in found["random"]]
                    row["vs_random_p"] = float(mannwhitneyu(best, random_best, alternative="two-sided").pvalue)
                rows[a][b] = row
                print(f"{dataset:<15} {a:<9} {b:>5} queries: best test {row['mean']:.2f} ± {row['std']:.2f} "
                      f"(quartiles {row['quartiles']}), optimum {optimum:.2f} found by {row['found_optimum']}/"
                      f"{args.seeds}" + (f", vs random p={row['vs_random_p']:.3g}" if "vs_random_p" in row else ""),
                      flush=True)
        result["datasets"][dataset] = {"column": COLUMNS[dataset], "optimum": round(optimum, 4), "results": rows}
        write_json(Path(args.out), result)  # each dataset as it is done
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(Path(args.out), result)
    print(f"-> {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
