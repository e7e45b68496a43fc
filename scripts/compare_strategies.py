"""SPOS against FairNAS on the digits space, at the same budget of path-images (images x paths).

    .venv/bin/python scripts/compare_strategies.py --out docs/results/strategies-digits.json   # ~20 min on 2 cores

For each strategy: train the demo's supernet (configs/digits.yaml), report the mean training top-1
of the sampled paths over the last quarter of training, then score N random architectures on the
supernet (BN recalibrated, held-out split, as the search does). Each of the same N architectures is
also trained alone from scratch with the demo's retrain settings and tested on the test split. The
ranking quality is Kendall's tau-b between supernet scores and stand-alone test top-1.

FairNAS trains m = 8 paths per step on the same batch. ``--runs`` names each run as
``strategy:steps``; the default compares at the same budget of path-images (FairNAS takes 1/8 of
the steps and of the warm-up) and at the same number of training images drawn (same steps, 8x the
compute). ``--standalone-from FILE`` reuses the stand-alone results of an earlier run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

from supernet import SearchSpace
from supernet.pipeline.config import load_config
from supernet.data.loader import fixed_batches
from supernet.runtime.io import write_json
from supernet.pipeline import train_supernet
from supernet.pipeline.build import build_subnet, build_supernet, load_data, load_supernet
from supernet.pipeline.search import search_batches
from supernet.search import CandidateEvaluator, recalibrate_bn
from supernet.train import evaluate, fit
from supernet.train.metrics import read_metrics


def main(out: Path, run_root: Path, n_archs: int, runs: list[tuple[str, int]], seed: int,
         standalone_from: Path | None = None, alone_steps: int | None = None) -> dict:
    cfg = load_config(Path(__file__).parents[1] / "supernet" / "configs" / "digits.yaml")
    data = load_data(cfg)
    space = SearchSpace(build_supernet(cfg, data))
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(n_archs)]
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "archs": archs, "strategies": {}}

    for name, steps in runs:
        m = 8 if name == "fairnas" else 1
        run = run_root / f"{name}-{steps}"
        warmup = max(1, round(cfg.supernet.optim.warmup_steps * steps / cfg.supernet.steps))
        t = time.perf_counter()
        if (run / "config.yaml").is_file():  # an earlier invocation trained it: finish or reuse it
            train_supernet(run, None, resume=True)
        else:
            train_supernet(run, "digits", [f"strategy.name={name}", f"supernet.steps={steps}",
                                           f"supernet.optim.warmup_steps={warmup}"])
        seconds = time.perf_counter() - t
        rows = read_metrics(run / "supernet" / "metrics.jsonl")
        last = rows[len(rows) * 3 // 4:]
        model, _ = load_supernet(run, load_config(run / "config.yaml"), data, torch.device("cpu"))
        recal, val, finish = search_batches(data, cfg.search)
        scores = [1 - s["top1_err"] for s in CandidateEvaluator(model, recal, val, prepare=finish).evaluate_many(archs)]
        result["strategies"][f"{name}-{steps}"] = {
            "steps": steps, "paths_per_step": m, "images_drawn": steps * cfg.supernet.batch_size,
            "path_images": steps * m * cfg.supernet.batch_size,
            "train_top1_last_quarter": sum(r["acc"] for r in last) / len(last), "supernet_seconds": seconds,
            "supernet_val_top1": scores}
        print(f"{name}-{steps}: train top-1 (last quarter) {result['strategies'][f'{name}-{steps}']['train_top1_last_quarter']:.4f}, "
              f"{seconds:.0f} s; scores {[round(x, 3) for x in scores]}", flush=True)
    t = time.perf_counter()
    alone = []
    if standalone_from is not None:
        earlier = json.loads(standalone_from.read_text())
        assert earlier["archs"] == archs, "the earlier run scored other architectures (another --seed or --archs)"
        alone = earlier["standalone_test_top1"]
    retrain = cfg.retrain if alone_steps is None else dataclasses.replace(cfg.retrain, steps=alone_steps)
    result["standalone_steps"] = retrain.steps
    for i, arch in enumerate(archs[len(alone):], len(alone)):  # stand-alone: the retrain stage's recipe, from scratch
        torch.manual_seed(cfg.retrain.seed)
        model = build_subnet(cfg, data, arch)
        fit(model, data.train, retrain, None, meta={}, run_config={}, desc=f"alone {i}")
        recalibrate_bn(model, fixed_batches(data.train, cfg.retrain.batch_size, cfg.retrain.bn_recal_batches,
                                            cfg.retrain.seed + 1))
        alone.append(evaluate(model, data.test)["top1"])
        print(f"arch {i}: stand-alone test top-1 {alone[-1]:.4f}", flush=True)
    result["standalone_test_top1"] = alone
    result["standalone_seconds"] = time.perf_counter() - t

    for name, r in result["strategies"].items():
        r["kendall_tau_b"], r["p_value"] = kendalltau(r["supernet_val_top1"], alone)
        print(f"{name}: Kendall tau-b {r['kendall_tau_b']:.3f} (p={r['p_value']:.3f})")
    write_json(out, result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("strategies-digits.json"))
    ap.add_argument("--run-root", type=Path, default=Path("runs/compare"))
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--runs", default="spos:1504,fairnas:188,fairnas:1504",
                    help="strategy:steps,... (FairNAS at 188 steps = SPOS's 1504 in path-images)")
    ap.add_argument("--alone-steps", type=int, help="stand-alone training steps (default: the retrain config's)")
    ap.add_argument("--standalone-from", type=Path, help="reuse the stand-alone results of this earlier JSON")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    runs = [(r.split(":")[0], int(r.split(":")[1])) for r in args.runs.split(",")]
    main(args.out, args.run_root, args.archs, runs, args.seed, args.standalone_from, args.alone_steps)
