"""SPOS against FairNAS on the digits space, at the same budget of path-images (images x paths).

    .venv/bin/python scripts/compare_strategies.py --out docs/strategies-digits.json   # ~20 min on 2 cores

For each strategy: train the demo's supernet (configs/digits.yaml), report the mean training top-1
of the sampled paths over the last quarter of training, then score N random architectures on the
supernet (BN recalibrated, held-out split, as the search does). Each of the same N architectures is
also trained alone from scratch with the demo's retrain settings and tested on the test split. The
ranking quality is Kendall's tau-b between supernet scores and stand-alone test top-1.

FairNAS trains m = 8 paths per step on the same batch, so at the same budget it takes 1/8 of the
steps (and of the warm-up).
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

from supernet import SearchSpace
from supernet.config import load_config
from supernet.data.loader import fixed_batches
from supernet.io import write_json
from supernet.pipeline import _load_supernet, build_subnet, load_data, search_batches, train_supernet
from supernet.search import CandidateEvaluator, recalibrate_bn
from supernet.train import evaluate, fit
from supernet.train.metrics import read_metrics


def main(out: Path, run_root: Path, n_archs: int, steps: int, seed: int) -> dict:
    cfg = load_config(Path(__file__).parents[1] / "supernet" / "configs" / "digits.yaml")
    data = load_data(cfg)
    space = SearchSpace(build_subnet_space(cfg, data))
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(n_archs)]
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "archs": archs, "strategies": {}}

    t = time.perf_counter()
    alone = []
    for i, arch in enumerate(archs):  # stand-alone: the retrain stage's recipe, from scratch
        torch.manual_seed(cfg.retrain.seed)
        model = build_subnet(cfg, data, arch)
        fit(model, data.train, cfg.retrain, None, meta={}, run_config={}, desc=f"alone {i}")
        recalibrate_bn(model, fixed_batches(data.train, cfg.retrain.batch_size, cfg.retrain.bn_recal_batches,
                                            cfg.retrain.seed + 1))
        alone.append(evaluate(model, data.test)["top1"])
        print(f"arch {i}: stand-alone test top-1 {alone[-1]:.4f}", flush=True)
    result["standalone_test_top1"] = alone
    result["standalone_seconds"] = time.perf_counter() - t

    for name, m in (("spos", 1), ("fairnas", 8)):
        run = run_root / name
        warmup = max(1, cfg.supernet.optim.warmup_steps // m)
        t = time.perf_counter()
        train_supernet(run, "digits", [f"strategy.name={name}", f"supernet.steps={steps // m}",
                                       f"supernet.optim.warmup_steps={warmup}"], force=True)
        seconds = time.perf_counter() - t
        rows = read_metrics(run / "supernet" / "metrics.jsonl")
        last = rows[len(rows) * 3 // 4:]
        model = _load_supernet(run, load_config(run / "config.yaml"), data, torch.device("cpu"))
        recal, val, finish = search_batches(data, cfg.search)
        scores = [1 - s["top1_err"] for s in CandidateEvaluator(model, recal, val, prepare=finish).evaluate_many(archs)]
        tau, p = kendalltau(scores, alone)
        result["strategies"][name] = {
            "steps": steps // m, "paths_per_step": m, "path_images": steps * cfg.supernet.batch_size,
            "train_top1_last_quarter": sum(r["acc"] for r in last) / len(last), "supernet_seconds": seconds,
            "supernet_val_top1": scores, "kendall_tau_b": tau, "p_value": p}
        print(f"{name}: train top-1 (last quarter) {result['strategies'][name]['train_top1_last_quarter']:.4f}, "
              f"Kendall tau-b {tau:.3f} (p={p:.3f}), {seconds:.0f} s", flush=True)
    write_json(out, result)
    return result


def build_subnet_space(cfg, data):
    from supernet.pipeline import build_supernet
    return build_supernet(cfg, data)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("strategies-digits.json"))
    ap.add_argument("--run-root", type=Path, default=Path("runs/compare"))
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--steps", type=int, default=1504, help="SPOS steps; FairNAS gets steps/8 (same path-images)")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    main(args.out, args.run_root, args.archs, args.steps, args.seed)
