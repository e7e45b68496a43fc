"""Every strategy's ranking quality on the packaged ranking task, at an equal wall-clock budget.

    OMP_NUM_THREADS=1 python -m benchmarks.ranking --out docs/results/ranking-digits.json \
        --plot docs/images/ranking-digits.png [--budget 120] [--archs 24] [--work runs/ranking-study]

For each strategy (SPOS, FairNAS, ENAS, DARTS, Proxyless, FBNet) a supernet of
``configs/ranking-digits.yaml`` is trained for as many steps as fit in ``--budget`` seconds (the
step time measured on a short probe first); SPOS and FairNAS then run the config's evolution
search, the others choose their architecture themselves. The architectures ranked are the same
for every strategy: ``--archs`` random ones plus each strategy's pick, each trained alone once
with the rank stage's recipe (``rank.steps`` of the retrain recipe) and tested on the test split;
``--repeat`` of them again with a second seed give the ceiling. Each strategy's supernet then
scores all of them (BN-recalibrated on the held-out split; DARTS, Proxyless and FBNet also by the
log-probability under α/θ) and the figures of ``supernet rank`` are computed for it, beside FLOPs,
params, NASWOT and SynFlow. The stand-alone rows are kept in ``--work`` so an interrupted run
continues.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from supernet import pipeline
from supernet.arch import SearchSpace, parse_arch
from supernet.cost import CostModel
from supernet.data.loader import fixed_batches
from supernet.pipeline.build import load_data, load_supernet, model_options, space_model
from supernet.pipeline.config import load_config, resolve_config_path
from supernet.pipeline.rank import arch_log_prob, proxies, train_alone
from supernet.pipeline.search import search_batches
from supernet.ranking import build_report
from supernet.ranking.stats import stratified
from supernet.runtime.io import write_json
from supernet.search import CandidateEvaluator

from .common import machine

CONFIG = "ranking-digits"
# Each strategy's own settings on this task; the latency losses are off (no latency table here).
STRATEGIES = {
    "spos": [], "fairnas": [],
    "enas": ["strategy.train_steps=20", "strategy.ctrl_steps=10", "strategy.held_out=0.1"],
    "darts": ["strategy.arch_lr=0.01"],
    "proxyless": ["strategy.latency_loss=null", "strategy.arch_every=5", "strategy.arch_lr=0.02"],
    "fbnet": ["strategy.latency_loss=null", "strategy.arch_lr=0.01"],
}
SEARCHED = ("spos", "fairnas")  # a search picks their architecture; the others choose it themselves


def step_seconds(work: Path, name: str, threads: int, probe: int = 20) -> float:
    """Seconds per supernet step of ``name``, from the last half of a ``probe``-step run."""
    run = work / f"probe-{name}"
    pipeline.train_supernet(run, CONFIG, [f"strategy.name={name}", *STRATEGIES[name], f"supernet.steps={probe}",
                                          "progress=false", f"log_every={probe // 2}", f"checkpoint_every={probe}",
                                          f"runtime.threads={threads}"], force=run.exists())
    rows = [json.loads(line) for line in (run / "supernet" / "metrics.jsonl").read_text().splitlines()]
    return 64 / rows[-1]["img_s"]  # the second half's images per second, at batch 64


def train_strategy(work: Path, name: str, budget: float, threads: int) -> dict:
    """The strategy's supernet at ``budget`` seconds of steps, and its pick (searched for SPOS/FairNAS)."""
    run = work / name
    steps = max(20, int(budget / step_seconds(work, name, threads)))
    warm = [f"strategy.warmup_steps={steps // 4}"] if name in ("proxyless", "fbnet") else []
    t0 = time.perf_counter()
    if not (run / "search" / "best_arch.json").is_file():
        pipeline.train_supernet(run, CONFIG, [f"strategy.name={name}", *STRATEGIES[name], *warm,
                                              f"supernet.steps={steps}", f"checkpoint_every={steps}",
                                              "progress=false", f"runtime.threads={threads}"], force=run.exists())
        if name in SEARCHED:
            pipeline.search(run, ["progress=false"], force=(run / "search").exists())
    seconds = time.perf_counter() - t0
    pick = json.loads((run / "search" / "best_arch.json").read_text())["arch"]
    print(f"{name}: {steps} supernet steps, {seconds:.0f} s with its search", flush=True)
    return {"run": run, "steps": steps, "seconds": seconds, "pick": pick}


def common_archs(space: SearchSpace, n: int, picks: list[dict], seed: int) -> list[dict]:
    rng = random.Random(seed)
    archs, seen = [], set()
    for arch in picks + [space.sample(rng) for _ in range(4 * n)]:
        key = json.dumps(arch, sort_keys=True)
        if key not in seen and len(archs) < n + len(picks):
            seen.add(key)
            archs.append(arch)
    return archs


def standalone(work: Path, cfg, data, archs: list[dict], jobs: list[tuple[int, int]]) -> dict:
    """``{(index, seed): result}`` for ``jobs``, cached row by row in ``work/standalone.jsonl``."""
    path = work / "standalone.jsonl"
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["arch"] == archs[r["index"]]:
                done[(r["index"], r["seed"])] = r
    for k, (i, seed) in enumerate(jobs):
        if (i, seed) in done:
            continue
        r = {"index": i, "seed": seed, "arch": archs[i], **train_alone(cfg, data, archs[i], seed)}
        done[(i, seed)] = r
        with path.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"alone {k + 1}/{len(jobs)}: arch {i} seed {seed} top-1 {r['standalone']:.4f} ({r['seconds']:.1f} s)",
              flush=True)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of supernet training per strategy")
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("runs/ranking-study"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    names = args.strategies.split(",")
    trained = {name: train_strategy(args.work, name, args.budget, args.threads) for name in names}

    cfg = load_config(resolve_config_path(CONFIG), ["progress=false"])
    data = load_data(cfg)
    space = SearchSpace(space_model(cfg, model_options(cfg, data)))
    picks = [parse_arch(t["pick"], space) for t in trained.values()]
    archs = common_archs(space, args.archs, picks, seed=2026)
    cost = CostModel(space_model(cfg, model_options(cfg, data)))
    x = fixed_batches(data.train, cfg.rank.proxy_batch, 1, 0)[0][0]
    base = [{"index": i, "arch": a, "flops": cost.flops(a), "params": cost.params(a), **proxies(cfg, data, a, 0, x)}
            for i, a in enumerate(archs)]
    seeds = cfg.rank.seeds[:2]
    again = stratified([b["flops"] for b in base], args.repeat)  # the ceiling's subset, over the cost range
    jobs = [(i, seeds[0]) for i in range(len(archs))] + [(i, seeds[1]) for i in sorted(again)]
    alone = standalone(args.work, cfg, data, archs, jobs)

    result = {"machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "config": CONFIG, "budget_s": args.budget, "standalone_steps": cfg.rank.steps, "archs": archs,
              "strategies": {}}
    for name, t in trained.items():
        rcfg = load_config(t["run"] / "config.yaml", ["progress=false"])
        model, _ = load_supernet(t["run"], rcfg, data, torch.device("cpu"))
        recal, val, finish = search_batches(data, rcfg.search)
        scores = CandidateEvaluator(model, recal, val, prepare=finish).evaluate_many(archs)
        log_prob = arch_log_prob(t["run"], rcfg, SearchSpace(model), None)
        candidates = []
        for b, s in zip(base, scores):
            c = {**b, "supernet_score": 1 - s["top1_err"]}
            if log_prob is not None:
                c["log_prob"] = log_prob(b["arch"])
            candidates.append(c)
        rows = [{**candidates[i], "seed": seed, "standalone": alone[(i, seed)]["standalone"]} for i, seed in jobs]
        plan = {"strategy": name, "candidates": candidates, "pick": archs.index(parse_arch(t["pick"], space)),
                "settings": {"seeds": seeds, "steps": cfg.rank.steps}}
        report = build_report(plan, rows, cfg.rank.topk)
        report.update({"supernet_steps": t["steps"], "supernet_seconds": t["seconds"]})
        result["strategies"][name] = report
        print(f"{name}: tau-b {report['kendall_tau']}, pick percentile {report['pick']['percentile']:.2f}", flush=True)
    result["baselines"] = next(iter(result["strategies"].values()))["baselines"]
    result["ceiling"] = next(iter(result["strategies"].values()))["ceiling"]
    result["seconds"] = time.perf_counter() - t0
    write_json(args.out, result)
    if args.plot is not None:
        plot(result, args.plot)
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


def plot(result: dict, path: Path) -> None:
    """Kendall τ-b of every strategy's supernet score and of the free baselines, the ceiling as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{n} supernet" for n in result["strategies"]] + \
            [f"{n} log P" for n, r in result["strategies"].items() if "log_prob" in r] + list(result["baselines"])
    taus = [r["kendall_tau"] for r in result["strategies"].values()] + \
           [r["log_prob"]["kendall_tau"] for r in result["strategies"].values() if "log_prob" in r] + \
           [b["kendall_tau"] for b in result["baselines"].values()]
    colors = ["C0"] * len(result["strategies"]) + ["C1"] * (len(names) - len(result["strategies"]) - len(
        result["baselines"])) + ["0.6"] * len(result["baselines"])
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.barh(names, [t or 0.0 for t in taus], color=colors)
    c = result["ceiling"]["kendall_tau"]
    if c is not None:
        ax.axvline(c, color="C3", ls="--", label=f"ceiling: seed 0 vs seed 1 ({c:+.2f})")
        ax.legend(loc="lower right")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.invert_yaxis()
    ax.set_xlabel(f"Kendall tau-b against stand-alone test top-1 ({len(result['archs'])} architectures)")
    ax.set_title(f"{result['config']}: every strategy at {result['budget_s']:.0f} s of supernet training")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
