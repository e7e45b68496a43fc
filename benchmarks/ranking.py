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
# Few-shot SPOS (split on layer_0's 9 options), as (the budget's multiple, the share of it spent one-shot):
# at the one-shot budget, split halfway; and at the paper's compute, the one-shot budget then each of
# the K sub-supernets trained for a quarter of it (Zhao et al.'s NAS-Bench-201 code: 600 epochs one-shot,
# then 150 per sub-supernet), 1 + 9/4 = 3.25 budgets in all.
FEW_SHOT = {"spos-few-shot": (1.0, 0.5), "spos-few-shot-paper": (3.25, 1 / 3.25)}
# And one-shot SPOS for as many steps as the few-shot run at the paper's compute took, so that a gain
# there is not the extra steps'.
SAME_STEPS = {"spos-long": "spos-few-shot-paper"}


def strategy_of(name: str) -> str:
    return name.split("-")[0]


def step_seconds(work: Path, name: str, threads: int, probe: int = 20) -> float:
    """Seconds per supernet step of ``name``, from the last half of a ``probe``-step run."""
    run = work / f"probe-{name}"
    pipeline.train_supernet(run, CONFIG, [f"strategy.name={name}", *STRATEGIES[name], f"supernet.steps={probe}",
                                          "progress=false", f"log_every={probe // 2}", f"checkpoint_every={probe}",
                                          f"runtime.threads={threads}"], force=run.exists())
    rows = [json.loads(line) for line in (run / "supernet" / "metrics.jsonl").read_text().splitlines()]
    return 64 / rows[-1]["img_s"]  # the second half's images per second, at batch 64


def train_strategy(work: Path, name: str, budget: float, threads: int) -> dict:
    """The strategy's supernet at ``budget`` seconds of steps, and its pick (searched for SPOS/FairNAS);
    a finished one (``work/name/study.json``) is read back, not trained again."""
    run, strategy = work / name, strategy_of(name)
    done = run / "study.json"
    if not done.is_file():
        step = step_seconds(work, strategy, threads)
        steps = max(20, int(budget / step))
        extra = []
        nominal = budget * FEW_SHOT.get(name, (1,))[0]
        if name in SAME_STEPS:
            same = train_strategy(work, SAME_STEPS[name], budget, threads)
            steps, nominal = same["steps"], same["budget_s"]
        if name in FEW_SHOT:
            times, one_shot = FEW_SHOT[name]
            steps = int(steps * times)
            extra = [f"supernet.few_shot.split_at={int(steps * one_shot)}"]
        if strategy in ("proxyless", "fbnet"):
            extra.append(f"strategy.warmup_steps={steps // 4}")
        t0 = time.perf_counter()
        pipeline.train_supernet(run, CONFIG, [f"strategy.name={strategy}", *STRATEGIES[strategy], *extra,
                                              f"supernet.steps={steps}", f"checkpoint_every={steps}",
                                              "progress=false", f"runtime.threads={threads}"], force=run.exists())
        t1 = time.perf_counter()
        if strategy in SEARCHED:
            pipeline.search(run, ["progress=false"], force=(run / "search").exists())
        write_json(done, {"steps": steps, "probe_step_s": step, "budget_s": nominal,
                          "train_s": t1 - t0, "search_s": time.perf_counter() - t1, "overrides": extra})
    t = json.loads(done.read_text())
    t.update(run=run, pick=json.loads((run / "search" / "best_arch.json").read_text())["arch"])
    print(f"{name}: {t['steps']} supernet steps in {t['train_s']:.0f} s, its search {t['search_s']:.0f} s", flush=True)
    return t


def random_archs(space: SearchSpace, n: int, seed: int) -> list[dict]:
    """``n`` distinct random architectures, the same for every strategy."""
    rng = random.Random(seed)
    archs, seen = [], set()
    while len(archs) < n:
        arch = space.sample(rng)
        key = json.dumps(arch, sort_keys=True)
        if key not in seen:
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
            if r["index"] < len(archs) and r["arch"] == archs[r["index"]]:
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
    ap.add_argument("--archs", type=int, help="random architectures ranked (default: the config's rank.archs)")
    ap.add_argument("--repeat", type=int, help="of them trained again with a second seed (default: rank.repeat)")
    ap.add_argument("--work", type=Path, default=Path("runs/ranking-study"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strategies", default=",".join([*STRATEGIES, *FEW_SHOT, *SAME_STEPS]))
    ap.add_argument("--train-only", action="store_true", help="train the strategies' supernets and stop (a later "
                    "run without it reads them back)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    names = args.strategies.split(",")
    if args.train_only:
        for name in names:
            train_strategy(args.work, name, args.budget, args.threads)
        return
    cfg = load_config(resolve_config_path(CONFIG), ["rank.progress=false"])
    data = load_data(cfg)
    space = SearchSpace(space_model(cfg, model_options(cfg, data)))
    cost = CostModel(space_model(cfg, model_options(cfg, data)))
    seeds = cfg.rank.seeds[:2]
    args.archs = args.archs or cfg.rank.archs
    args.repeat = args.repeat or cfg.rank.repeat
    # The random architectures and their ground truth first (they do not depend on any supernet),
    # the ceiling's second seeds spread over their FLOPs; then every strategy and its pick.
    archs = random_archs(space, args.archs, seed=2026)
    again = stratified([cost.flops(a) for a in archs], args.repeat)
    jobs = [(i, seeds[0]) for i in range(len(archs))] + [(i, seeds[1]) for i in sorted(again)]
    standalone(args.work, cfg, data, archs, jobs)
    trained = {name: train_strategy(args.work, name, args.budget, args.threads) for name in names}
    for t in trained.values():
        pick = parse_arch(t["pick"], space)
        if pick not in archs:
            archs.append(pick)
            jobs.append((len(archs) - 1, seeds[0]))
    alone = standalone(args.work, cfg, data, archs, jobs)
    x = fixed_batches(data.train, cfg.rank.proxy_batch, 1, 0)[0][0]
    base = [{"index": i, "arch": a, "flops": cost.flops(a), "params": cost.params(a), **proxies(cfg, data, a, 0, x)}
            for i, a in enumerate(archs)]

    result = {"machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "config": CONFIG, "budget_s": args.budget, "standalone_steps": cfg.rank.steps, "archs": archs,
              "strategies": {}}
    for name, t in trained.items():
        rcfg = load_config(t["run"] / "config.yaml", ["search.progress=false"])
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
        report.update({"supernet_steps": t["steps"], "supernet_seconds": t["train_s"], "search_seconds": t["search_s"],
                       "budget_s": t["budget_s"]})
        result["strategies"][name] = report
        print(f"{name}: tau-b {report['kendall_tau']}, pick percentile {report['pick']['percentile']:.2f}", flush=True)
    result["baselines"] = next(iter(result["strategies"].values()))["baselines"]
    result["ceiling"] = next(iter(result["strategies"].values()))["ceiling"]
    result["seconds"] = time.perf_counter() - t0
    write_json(args.out, result)
    if args.plot is not None:
        plot(result, args.plot)
    print(markdown(result))
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


def markdown(result: dict) -> str:
    """The docs' table: every strategy's supernet score (and log-probability), the free baselines, the ceiling."""
    def num(v, fmt="{:+.2f}"):
        return "–" if v is None else fmt.format(v)

    def row(name, f, extra=""):
        return (f"| {name} | {num(f['kendall_tau'])} ({num(f['kendall_p'], '{:.2g}')}) | {num(f['spearman'])} | "
                f"{num(f['top_quarter_kendall_tau'])} | {num(f.get('pick_percentile'), '{:.2f}')} | "
                f"{num(f.get('pick_regret'), '{:.4f}')} | {extra} |")

    lines = ["| score | τ-b (p) | ρ | top-quarter τ | its pick's percentile | regret | supernet |",
             "|---|---|---|---|---|---|---|"]
    for name, r in result["strategies"].items():
        f = {**r["supernet"], "pick_percentile": r["pick"]["percentile"], "pick_regret": r["pick"]["regret"]}
        budget = f"{r['supernet_steps']:,} steps, {r['supernet_seconds']:.0f} s"
        lines.append(row(f"{name} supernet", f, budget))
        if "log_prob" in r:
            lines.append(row(f"{name} log P", r["log_prob"]))
    for name, f in result["baselines"].items():
        lines.append(row(name, f))
    c = result["ceiling"]
    lines.append(f"| ceiling: seed {c['seeds'][0]} against seed {c['seeds'][1]} ({c['archs']} architectures) | "
                 f"{num(c['kendall_tau'])} ({num(c['kendall_p'], '{:.2g}')}) | {num(c['spearman'])} | | | "
                 f"mean gap {c['seed_gap']:.4f} | |")
    return "\n".join(lines)


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
        ax.legend(loc="lower left")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.invert_yaxis()
    ax.set_xlabel(f"Kendall tau-b against stand-alone test top-1 ({len(result['archs'])} architectures)")
    ax.set_title(f"{result['config']}: every strategy at {result['budget_s']:.0f} s of supernet training\n"
                 f"(spos-few-shot-paper and spos-long: 3.25x that)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
