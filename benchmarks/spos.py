"""The SPOS figures: what SPOS users wait for, measured in one process with A and B interleaved.

- **step**: one SGD step (forward, backward, update) of the supernet with a fresh random path, of the
  supernet pinned to one path, and of the stand-alone fixed subnets of those paths, same batch, same
  weights. In every round the four forms run in a rotated order; the ratios are per round, so a
  drift in CPU speed cancels. The supernet is built with affine BN here so that it and the fixed
  subnet (always affine) do the same arithmetic.
- **eval**: one realistic search generation, 50 candidates made by the evolution operators from the
  top-10 of a random first generation, scored by ``CandidateEvaluator`` against a naive loop that
  re-reads and re-augments the data for every candidate; the scores must be identical.
- **cost**: microseconds per FLOPs/params query and per constrained sample (official space, 224²).
- **memory**: peak bytes of one supernet training step against one fixed-subnet step.
"""
from __future__ import annotations

import random
import statistics
import time

import torch
from torch.utils.data import Subset

from supernet.arch import SearchSpace, fix
from supernet.cost import Constraints, CostModel
from supernet.data import DataConfig, build_data
from supernet.data.loader import eval_loader, fixed_batches
from supernet.pipeline.search import search_batches
from supernet.runtime.progress import progress_bar
from supernet.search import CandidateEvaluator, EvolutionSearch, recalibrate_bn
from supernet.search.config import SearchConfig
from supernet.spaces import create
from supernet.strategies import SPOS, PathSampler, StepContext
from supernet.train.metrics import accuracy
from supernet.train.optim import step_on_path

from .common import (Table, check_same_function, peak_step_bytes, sgd, step_context, step_rounds, summary,
                     train_step)

# name -> (space, input size, batch, classes, other space options)
SHAPES = {
    "shufflenet-cifar@32/b64": ("shufflenet-cifar", 32, 64, 10, {}),
    "shufflenet@224/b8": ("shufflenet", 224, 8, 1000, {}),
    "shufflenet@32/b16": ("shufflenet", 32, 16, 10, {}),  # the NNI peer's shape: per-op overhead dominates
}

# The NNI peer's setting: its ShuffleNetSpace at 32 px, batch 16, 32 validation images.
EVAL = dict(space="shufflenet", size=32, classes=10, batch=16, recal_batches=4, val_images=32, options={})

COST = dict(space="shufflenet", options={}, constraint="flops<=330M")  # the official space and budget


def _supernet_step(strategy: SPOS, step: int, ctx: StepContext, x, y) -> None:
    """The supernet step of ``supernet.train.fit`` under ``spos``: the strategy draws and activates
    the path and runs forward and backward; the optimizer works on the path's parameters."""
    strategy.train_step(step, x, y, ctx)
    step_on_path(ctx.optimizer)


class _Pinned(SPOS):
    """SPOS with every step's path the same one: the same code path as ``spos``."""

    def __init__(self, space, arch):
        super().__init__(space)
        self.sampler = lambda step: arch


def bench_step(name: str, seconds: float, min_rounds: int, seed: int = 0, progress: bool = True) -> dict:
    """Rounds of the four forms until about ``seconds`` are spent (at least ``min_rounds``)."""
    space_name, size, batch, classes, options = SHAPES[name]
    torch.manual_seed(seed)
    model = create(space_name, input_size=size, num_classes=classes, **{**options, "affine": True}).train()
    space = SearchSpace(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, classes, (batch,), generator=gen)
    sampler = PathSampler(space, seed)
    pinned = space.sample(random.Random(seed))
    fixed_pinned = fix(model, pinned)
    opt, opt_pinned = sgd(model), sgd(fixed_pinned)
    strategy, ctx = SPOS(space, seed=seed), step_context(model, opt)
    pinned_strategy = _Pinned(space, pinned)
    check_same_function(model, space, pinned, fixed_pinned, x)

    def make_forms(steps):
        fixed_random = [fix(model, sampler(t)) for t in steps]  # built outside the timing
        opt_random = [sgd(f) for f in fixed_random]

        def random_path():
            for t in steps:  # drawing the path is part of the step
                _supernet_step(strategy, t, ctx, x, y)

        def fixed_random_path():
            for f, o in zip(fixed_random, opt_random):
                train_step(f, o, x, y)

        def pinned_path():
            for t in steps:
                _supernet_step(pinned_strategy, t, ctx, x, y)

        def fixed_pinned_path():
            for _ in steps:
                train_step(fixed_pinned, opt_pinned, x, y)

        return [("random", random_path), ("fixed_random", fixed_random_path),
                ("pinned", pinned_path), ("fixed_pinned", fixed_pinned_path)]

    times, k, step = step_rounds(make_forms, seconds, min_rounds, "fixed_pinned", f"step {name}", progress)
    ratio_pinned = [a / b for a, b in zip(times["pinned"], times["fixed_pinned"])]
    ratio_random = [a / b for a, b in zip(times["random"], times["fixed_random"])]
    memory = {"supernet": peak_step_bytes(lambda m, o, x, y: _supernet_step(strategy, step, ctx, x, y), model, opt, x, y),
              "fixed": peak_step_bytes(train_step, fixed_pinned, opt_pinned, x, y)}
    return {"shape": name, "steps_per_sample": k, "times_s": {f: summary(v) for f, v in times.items()},
            "ratio_pinned": summary(ratio_pinned), "ratio_random": summary(ratio_random), "memory": memory}


# --- candidate evaluation ---------------------------------------------------------------------------
def naive_scores(model, archs, data_train, val, batch: int, recal_batches: int, seed: int) -> list[dict]:
    """What a search without our evaluator does: per candidate, read and augment the batches again,
    recalibrate BN, score. The reference the fast evaluator must match exactly."""
    space = SearchSpace(model)
    out = []
    with torch.no_grad():
        for arch in archs:
            recal = fixed_batches(data_train, batch, recal_batches, seed)
            space.activate(arch)
            recalibrate_bn(model, recal)
            model.eval()
            top1 = top5 = n = 0
            for xb, yb in eval_loader(val, batch):
                c1, c5 = accuracy(model(xb), yb)
                top1, top5, n = top1 + c1, top5 + c5, n + len(yb)
            out.append({"top1_err": 1 - top1 / n, "top5_err": 1 - top5 / n})
    return out


def bench_eval(reps: int, seed: int = 0, progress: bool = True) -> dict:
    e = EVAL
    torch.manual_seed(seed)
    # Training images are augmented (pad-crop, flip) like CIFAR; the weights are the initialisation:
    # the time of a candidate does not depend on their values.
    data = build_data(DataConfig(name="synthetic", image_size=e["size"], synthetic_classes=e["classes"],
                                 synthetic_train=1000, synthetic_test=20, val_per_class=4, split_seed=seed))
    val = Subset(data.val, range(e["val_images"]))
    model = create(e["space"], input_size=e["size"], num_classes=e["classes"], **e["options"])
    space = SearchSpace(model)
    cfg = SearchConfig(recal_batches=e["recal_batches"], recal_batch_size=e["batch"], val_batch_size=e["batch"],
                       val_images=e["val_images"], seed=seed, progress=False)
    recal, val_batches, finish = search_batches(data, cfg)  # as the search stage loads them
    ours = CandidateEvaluator(model, recal, val_batches, prepare=finish)
    search = EvolutionSearch(space, ours, cfg, CostModel(model))
    search.step()  # generation 0: 50 random candidates; its top-10 are the parents
    archs = [a for a, _ in search.propose()]  # 25 mutations + 25 crossovers
    t_ours, t_naive, ratios, mismatches = [], [], [], 0
    for r in progress_bar(iterable=range(reps), desc="candidate evaluation", leave=False, disable=not progress):
        pair = [("ours", lambda: ours.evaluate_many(archs)),
                ("naive", lambda: naive_scores(model, archs, data.train, val, e["batch"], e["recal_batches"], seed))]
        got = {}
        for name, fn in (pair if r % 2 == 0 else pair[::-1]):
            t0 = time.perf_counter()
            got[name] = fn()
            got[name + "_s"] = time.perf_counter() - t0
        mismatches += sum(a != b for a, b in zip(got["ours"], got["naive"]))
        t_ours.append(got["ours_s"])
        t_naive.append(got["naive_s"])
        ratios.append(got["naive_s"] / got["ours_s"])
    n = len(archs)
    return {"setup": {**e, "candidates": n, "val_batches": -(-e["val_images"] // e["batch"])},
            "ours_s_per_candidate": summary([t / n for t in t_ours]),
            "naive_s_per_candidate": summary([t / n for t in t_naive]),
            "ours_candidates_per_s": n / statistics.median(t_ours), "naive_candidates_per_s": n / statistics.median(t_naive),
            "speedup": summary(ratios), "scores_identical": mismatches == 0, "mismatched_scores": mismatches}


# --- cost queries -----------------------------------------------------------------------------------
def bench_cost(rounds: int, seed: int = 0) -> dict:
    model = create(COST["space"], **COST["options"])
    space = SearchSpace(model)
    t0 = time.perf_counter()
    cost = CostModel(model)
    build_s = time.perf_counter() - t0
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(1000)]
    constraints = Constraints(cost, [COST["constraint"]])
    sampler = PathSampler(space, seed, cost, constraints)
    query, sample = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        for a in archs:
            cost.cost(a)
        query.append((time.perf_counter() - t0) / len(archs) * 1e6)
        t0 = time.perf_counter()
        for step in range(r * 200, (r + 1) * 200):
            sampler(step)
        sample.append((time.perf_counter() - t0) / 200 * 1e6)
    return {"query_us": summary(query), "constrained_sample_us": summary(sample), "table_build_s": build_s,
            "constraint": COST["constraint"], "space": COST["space"]}


def nni_summary(raw: dict, ev: dict) -> dict:
    """The figures of the NNI 3.0 peer (``spos_cpu.py --json FILE``) next to ours."""
    inter, evo, args = raw["interleaved"], raw["evolution"], raw.get("args", {})
    per_candidate = evo["total_s"] / max(evo["trials"], 1)
    return {"versions": raw.get("versions"), "args": args,
            "step_ratio_pinned": inter["median_ratio_pinned_over_fixed"],
            "step_ratio_random": inter["median_ratio_random_over_fixed"],
            "s_per_candidate": per_candidate,
            "ours_over_nni": per_candidate / ev["ours_s_per_candidate"]["median"]}


def rows(res: dict, table: Table) -> None:
    row = table.row
    for name, st in res["step"].items():
        row(f"step {name}: supernet pinned / fixed subnet", st["ratio_pinned"])
        row(f"step {name}: supernet random path / fixed subnet", st["ratio_random"])
        row(f"step {name}: fixed subnet (ms)", st["times_s"]["fixed_pinned"], "{:.1f}", 1e3)
    ev = res["eval"]
    s = ev["setup"]
    what = f"{s['candidates']} cands, {s['recal_batches']}x{s['batch']} recal + {s['val_images']} val imgs"
    row(f"eval ours, ms/candidate ({what})", ev["ours_s_per_candidate"], "{:.1f}", 1e3)
    row("eval naive loop, ms/candidate", ev["naive_s_per_candidate"], "{:.1f}", 1e3)
    row("eval speedup (naive / ours)", ev["speedup"], "{:.2f}")
    c = res["cost"]
    row("cost query, us (FLOPs+params of one arch, 224²)", c["query_us"], "{:.1f}")
    row(f"constrained sample, us ({c['constraint']})", c["constrained_sample_us"], "{:.1f}")
    for name, mem in res["memory"].items():
        table.memory(f"memory {name}: supernet / fixed peak (MB)", mem["supernet"]["peak_bytes"], mem["fixed"]["peak_bytes"])
    table.text("")
    table.text(f"scores of ours and the naive loop identical: {'yes' if ev['scores_identical'] else 'NO'} "
               f"({ev['ours_candidates_per_s']:.1f} vs {ev['naive_candidates_per_s']:.1f} candidates/s)")
    if "nni" in res:
        n = res["nni"]
        table.text(f"NNI 3.0 (same run): step pinned/fixed {n['step_ratio_pinned']:.3f}, random/fixed "
                   f"{n['step_ratio_random']:.3f}; {n['s_per_candidate'] * 1e3:.0f} ms/candidate "
                   f"= {n['ours_over_nni']:.1f}x ours")
