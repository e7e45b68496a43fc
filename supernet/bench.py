"""``supernet bench``: what SPOS users wait for, measured in one process with A and B interleaved.

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
- **darts**: a DARTS search step against the same arithmetic written by hand, second order over
  first, and its memory (``supernet/bench_family.py``).
- **enas**: a shared-weight ENAS step against the fixed subnet it sampled, and a controller step
  (``supernet/bench_family.py``).
- **proxyless** / **fbnet**: their weight and architecture steps and the schedule's average against
  the fixed subnet of the same path, and their memory (``supernet/bench_hardware.py``).

Times are medians over rounds with a 95% confidence interval of the median, min-max and n.
Compare ratios, not absolute times, across machines: CPU speed on shared machines drifts by tens
of percent.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import weakref
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.data import Subset

from .arch import SearchSpace, fix
from .config import SearchConfig
from .cost import Constraints, CostModel
from .data import DataConfig, build_data
from .data.loader import eval_loader, fixed_batches
from .search.evaluator import CandidateEvaluator, recalibrate_bn
from .search.evolution import EvolutionSearch
from .pipeline import search_batches
from .spaces import create
from .strategies import SPOS, PathSampler, StepContext
from .train.metrics import accuracy, progress_bar
from .train import device
from .train.optim import SGD, step_on_path

# name -> (space, input size, batch, classes, other space options)
SHAPES = {
    "shufflenet-cifar@32/b64": ("shufflenet-cifar", 32, 64, 10, {}),
    "shufflenet@224/b8": ("shufflenet", 224, 8, 1000, {}),
    "shufflenet@32/b16": ("shufflenet", 32, 16, 10, {}),  # the NNI peer's shape: per-op overhead dominates
}
# The NNI peer's setting: its ShuffleNetSpace at 32 px, batch 16, 32 validation images.
EVAL = dict(space="shufflenet", size=32, classes=10, batch=16, recal_batches=4, val_images=32, options={})
COST = dict(space="shufflenet", options={}, constraint="flops<=330M")  # the official space and budget
# How long each part runs: seconds of step rounds per shape (at least step_rounds rounds), repetitions
# of the candidate evaluation, rounds of cost queries.
EFFORT = {"quick": dict(step_s=20, step_rounds=6, eval_reps=2, cost_rounds=5, darts_s=30, darts_rounds=3, enas_s=30,
                        enas_rounds=6, hardware_s=20, hardware_rounds=5),
          "full": dict(step_s=90, step_rounds=20, eval_reps=5, cost_rounds=20, darts_s=300, darts_rounds=10, enas_s=120,
                       enas_rounds=20, hardware_s=120, hardware_rounds=15)}
PARTS = ("spos", "darts", "enas", "proxyless", "fbnet")  # --only: the SPOS figures (step, eval, cost, memory) or one method's rows


def summary(xs: list[float]) -> dict:
    lo, hi = median_ci(xs)
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "ci95": [lo, hi]}


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics x_(j) and
    x_(n+1-j), with j the largest rank such that P(Binomial(n, 1/2) < j) <= (1 - level) / 2. With
    fewer than 6 samples no such j exists and the interval is min-max."""
    xs, n = sorted(xs), len(xs)
    j, tail = 0, 0.0
    while j < n // 2:
        tail += math.comb(n, j) / 2**n  # P(B = j)
        if tail > (1 - level) / 2:
            break
        j += 1
    return (xs[j - 1], xs[n - j]) if j else (xs[0], xs[-1])


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "malloc": "keeps freed memory" if device.freed_memory_kept else "glibc defaults"}


# --- supernet step --------------------------------------------------------------------------------
def _sgd(model: torch.nn.Module, lr: float = 0.01, weight_decay: float = 4e-5) -> torch.optim.SGD:
    """SGD as in SPOS training (DARTS: lr 0.025, wd 3e-4), with momentum buffers already there, so
    every timed step does the same work as a step in the middle of training."""
    opt = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    for p in model.parameters():
        opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return opt


def _train_step(model, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def _context(model, opt, held_out: Optional[Callable] = None) -> StepContext:
    return StepContext(net=model, criterion=F.cross_entropy, optimizer=opt, device=torch.device("cpu"),
                       autocast=contextlib.nullcontext, held_out=held_out)


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
    opt, opt_pinned = _sgd(model), _sgd(fixed_pinned)
    strategy, ctx = SPOS(space, seed=seed), _context(model, opt)
    pinned_strategy = _Pinned(space, pinned)
    _check_same_function(model, space, pinned, fixed_pinned, x)

    times: dict[str, list[float]] = {"random": [], "fixed_random": [], "pinned": [], "fixed_pinned": []}
    # k: steps per timed sample, so that one sample lasts about 0.15 s: short samples, many rounds.
    k, step, r, rounds = 1, 0, 0, min_rounds
    bar = progress_bar(total=rounds, desc=f"step {name}", leave=False, disable=not progress)
    while r <= rounds:
        steps = range(step, step + k)
        step += k
        fixed_random = [fix(model, sampler(t)) for t in steps]  # built outside the timing
        opt_random = [_sgd(f) for f in fixed_random]

        def random_path():
            for t in steps:  # drawing the path is part of the step
                _supernet_step(strategy, t, ctx, x, y)

        def fixed_random_path():
            for f, o in zip(fixed_random, opt_random):
                _train_step(f, o, x, y)

        def pinned_path():
            for t in steps:
                _supernet_step(pinned_strategy, t, ctx, x, y)

        def fixed_pinned_path():
            for _ in steps:
                _train_step(fixed_pinned, opt_pinned, x, y)

        forms = [("random", random_path), ("fixed_random", fixed_random_path),
                 ("pinned", pinned_path), ("fixed_pinned", fixed_pinned_path)]
        got = {}
        for form, fn in forms[r % 4:] + forms[:r % 4]:  # rotated: each form leads in turn
            t0 = time.perf_counter()
            fn()
            got[form] = (time.perf_counter() - t0) / len(steps)
        if r == 0:  # round 0 warms up allocator and kernels, and sets k and the number of rounds
            k = max(1, min(16, round(0.15 / got["fixed_pinned"])))
            rounds = max(min_rounds, min(200, round(seconds / (k * sum(got.values())))))
            bar.reset(total=rounds)
        else:
            for form, dt in got.items():
                times[form].append(dt)
            bar.update()
        r += 1
    bar.close()
    ratio_pinned = [a / b for a, b in zip(times["pinned"], times["fixed_pinned"])]
    ratio_random = [a / b for a, b in zip(times["random"], times["fixed_random"])]
    memory = {"supernet": peak_step_bytes(lambda m, o, x, y: _supernet_step(strategy, step, ctx, x, y), model, opt, x, y),
              "fixed": peak_step_bytes(_train_step, fixed_pinned, opt_pinned, x, y)}
    return {"shape": name, "steps_per_sample": k, "times_s": {f: summary(v) for f, v in times.items()},
            "ratio_pinned": summary(ratio_pinned), "ratio_random": summary(ratio_random), "memory": memory}


@torch.no_grad()
def _check_same_function(model, space, arch, fixed, x) -> None:
    """The pinned supernet and the fixed subnet must compute the same thing (eval mode)."""
    space.activate(arch)
    model.eval(), fixed.eval()
    try:
        a, b = model(x), fixed(x)
    finally:
        model.train(), fixed.train()
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max())):
        raise AssertionError(f"fix() changed the function: max |diff| {float((a - b).abs().max()):.3g}")


# --- memory -----------------------------------------------------------------------------------------
class _PeakMemory(TorchDispatchMode):
    """Live bytes of the tensors created while active (activations, gradients, temporaries), and
    their peak; storages that existed before (weights, optimizer state, inputs) are not counted."""

    def __init__(self, existing: set[int]):
        super().__init__()
        self.existing, self.tracked = existing, {}
        self.live = self.peak = 0

    def _free(self, key: int, n: int) -> None:
        self.live -= n
        self.tracked.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                key, n = st.data_ptr(), st.nbytes()
                if n and key not in self.tracked and key not in self.existing:
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    self.tracked[key] = weakref.finalize(st, self._free, key, n)
        return out


def peak_step_bytes(train_step: Callable, model, opt, x, y) -> dict:
    """Peak memory of ``train_step(model, opt, x, y)``: resident state (weights, buffers, optimizer
    state) plus the peak of what the step allocates."""
    resident = [*model.parameters(), *model.buffers(),
                *(v for s in opt.state.values() for v in s.values() if torch.is_tensor(v))]
    resident_bytes = sum(t.numel() * t.element_size() for t in resident)
    opt.zero_grad(set_to_none=True)
    existing = {t.untyped_storage().data_ptr() for t in [*resident, x, y]}
    with _PeakMemory(existing) as mem:
        train_step(model, opt, x, y)
    return {"resident_bytes": resident_bytes, "step_peak_bytes": mem.peak, "peak_bytes": resident_bytes + mem.peak}


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


# --- the whole suite --------------------------------------------------------------------------------
def run(quick: bool = False, progress: bool = True, nni: Optional[dict] = None, only: Optional[str] = None,
        nni_family: Optional[dict] = None) -> dict:
    from .bench_family import bench_darts, bench_enas, nni_darts
    e = EFFORT["quick" if quick else "full"]
    t0 = time.perf_counter()
    result: dict = {"machine": machine(), "quick": quick}
    if only in (None, "darts"):  # first: its RSS growth is only meaningful in a fresh process
        result["darts"] = bench_darts(e["darts_s"], e["darts_rounds"], progress=progress)
        if nni_family is not None:
            try:
                result["darts"]["nni"] = nni_darts(nni_family)
            except (KeyError, TypeError) as err:
                raise ValueError(f"the NNI family results lack {err}; pass the file written by "
                                 f"family_cpu.py --json") from None
    if only in (None, "enas"):
        result["enas"] = bench_enas(e["enas_s"], e["enas_rounds"], progress=progress)
    for name in ("proxyless", "fbnet"):
        if only in (None, name):
            from . import bench_hardware
            result[name] = getattr(bench_hardware, f"bench_{name}")(e["hardware_s"], e["hardware_rounds"],
                                                                    progress=progress)
            peer = bench_hardware.nni_hardware(nni_family).get(name) if nni_family is not None else None
            if peer is not None:
                result[name]["nni"] = peer
    if only in (None, "spos"):
        steps = {name: bench_step(name, e["step_s"], e["step_rounds"], progress=progress) for name in SHAPES}
        result["step"] = steps
        result["step_ratio_pinned"] = {k: v["ratio_pinned"]["median"] for k, v in steps.items()}
        result["step_ratio_random"] = {k: v["ratio_random"]["median"] for k, v in steps.items()}
        result["memory"] = {k: v.pop("memory") for k, v in steps.items()}
        ev = bench_eval(e["eval_reps"], progress=progress)
        result["eval"] = ev
        result["eval_speedup"] = ev["speedup"]["median"]
        result["cost"] = bench_cost(e["cost_rounds"])
        if nni is not None:
            try:
                result["nni"] = nni_summary(nni, ev)
            except (KeyError, TypeError) as err:
                raise ValueError(f"the NNI results lack {err}; pass the file written by spos_cpu.py --json") from None
    result["seconds"] = time.perf_counter() - t0
    return result


def nni_summary(raw: dict, ev: dict) -> dict:
    """The figures of ``../shared/peers/nni/spos_cpu.py --json`` next to ours."""
    inter, evo, args = raw["interleaved"], raw["evolution"], raw.get("args", {})
    per_candidate = evo["total_s"] / max(evo["trials"], 1)
    return {"versions": raw.get("versions"), "args": args,
            "step_ratio_pinned": inter["median_ratio_pinned_over_fixed"],
            "step_ratio_random": inter["median_ratio_random_over_fixed"],
            "s_per_candidate": per_candidate,
            "ours_over_nni": per_candidate / ev["ours_s_per_candidate"]["median"]}


def format_table(res: dict) -> str:
    m = res["machine"]
    lines = [f"supernet bench{' --quick' if res['quick'] else ''}: {m['cpu']}, {m['cores']} cores, "
             f"{m['threads']} threads, torch {m['torch']}, Python {m['python']}, malloc {m['malloc']}",
             "", f"| {'figure':<66} | {'median':>10} | {'95% CI of median':>19} | {'min-max':>19} | {'n':>3} |",
             f"|{'-' * 68}|{'-' * 12}:|{'-' * 20}:|{'-' * 20}:|{'-' * 4}:|"]

    def row(label, s, fmt="{:.3f}", scale=1.0):
        lo, hi = fmt.format(s["min"] * scale), fmt.format(s["max"] * scale)
        clo, chi = (fmt.format(v * scale) for v in s["ci95"])
        lines.append(f"| {label:<66} | {fmt.format(s['median'] * scale):>10} | {clo + ' - ' + chi:>19} | "
                     f"{lo + ' - ' + hi:>19} | {s['n']:>3} |")

    if "darts" in res:
        _darts_rows(res["darts"], row, lines)
    if "enas" in res:
        _enas_rows(res["enas"], row)
    for name in ("proxyless", "fbnet"):
        if name in res:
            from .bench_hardware import hardware_rows
            hardware_rows(name, res[name], row, lambda label, a, b: _memory_line(lines, label, a, b), lines.append)
    if "step" in res:
        _spos_rows(res, row, lines)
    lines.append(f"total {res['seconds']:.0f} s")
    return "\n".join(lines)


def _spos_rows(res: dict, row, lines: list) -> None:
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
        _memory_line(lines, f"memory {name}: supernet / fixed peak (MB)", mem["supernet"]["peak_bytes"],
                     mem["fixed"]["peak_bytes"])
    lines.append("")
    lines.append(f"scores of ours and the naive loop identical: {'yes' if ev['scores_identical'] else 'NO'} "
                 f"({ev['ours_candidates_per_s']:.1f} vs {ev['naive_candidates_per_s']:.1f} candidates/s)")
    if "nni" in res:
        n = res["nni"]
        lines.append(f"NNI 3.0 (same session): step pinned/fixed {n['step_ratio_pinned']:.3f}, random/fixed "
                     f"{n['step_ratio_random']:.3f}; {n['s_per_candidate'] * 1e3:.0f} ms/candidate "
                     f"= {n['ours_over_nni']:.1f}x ours")


def _memory_line(lines: list, label: str, a: int, b: int) -> None:
    """A table line for two peaks in bytes: their ratio, and both in MB."""
    lines.append(f"| {label:<66} | {a / b:>10.2f} | {'':>19} | {f'{a / 2**20:.0f} / {b / 2**20:.0f}':>19} | {1:>3} |")


def _enas_rows(d: dict, row) -> None:
    s = d["setting"]
    where = f"{s['options']['layers']}x{s['options']['channels']}, {s['size']}px, b{s['batch']}"
    row(f"enas step (macro {where}): ours / fixed subnets sampled", d["ratio_over_fixed"])
    row("enas shared-weight step: ours (ms)", d["ms"]["ours"], "{:.1f}")
    row("enas shared-weight step: fixed subnet (ms)", d["ms"]["fixed"], "{:.1f}")
    row(f"enas controller step: {s['aggregate']} samples + rewards + update (ms)", d["controller_step_ms"], "{:.0f}")
    row(f"enas controller step: controller alone ({s['aggregate']} samples, bwd, Adam; ms)", d["controller_alone_ms"],
        "{:.1f}")


def _darts_rows(d: dict, row, lines: list) -> None:
    s = d["setting"]
    where = f"C={s['options']['channels']}, {s['options']['layers']} cells, {s['size']}px, b{s['batch']}"
    row(f"darts step ({where}): ours 1st order / hand-written", d["ratio_over_plain"])
    row("darts step: ours 2nd order / ours 1st order", d["unrolled_over_first"])
    for k, what in (("ours", "ours 1st order"), ("plain", "hand-written 1st order"), ("unrolled", "ours 2nd order")):
        row(f"darts step: {what} (ms)", d["ms"][k], "{:.0f}")
    m = d["memory"]
    _memory_line(lines, "memory darts: search step / fixed DARTS-V2 step peak (MB)", m["search_step"]["peak_bytes"],
                 m["fixed_darts_v2"]["peak_bytes"])
    if m.get("rss_growth_bytes") is not None:
        lines.append(f"| {'memory darts: peak RSS growth over 2 first-order steps (MB)':<66} | "
                     f"{m['rss_growth_bytes'] / 2**20:>10.0f} | {'':>19} | {'':>19} | {1:>3} |")
    if "nni" in d:
        n = d["nni"]
        lines.append(f"NNI 3.0 DARTS (family_cpu.py): {n['step_ms']:.0f} ms/step = {n['step_ms'] / d['ms']['ours']['median']:.1f}x "
                     f"ours 1st order; {n['ratio_to_fixed']:.1f}x its fixed DARTS-V2 step; peak RSS growth "
                     f"{n['rss_growth_mb']:.0f} MB")


def main(quick: bool, json_path: Optional[str], nni_path: Optional[str], threads: Optional[int],
         only: Optional[str] = None, nni_family_path: Optional[str] = None) -> int:
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    if only is not None and only not in PARTS:
        raise ValueError(f"--only {only!r}: choose one of {', '.join(PARTS)}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _main(quick, json_path, nni_path, only, nni_family_path)
    finally:
        torch.set_num_threads(before)  # called in-process (tests), the thread count must not leak


def _read_peer(path: Optional[str], script: str) -> Optional[dict]:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the NNI results {path}: {err}; write them with {script} --json FILE") from None


def _main(quick: bool, json_path: Optional[str], nni_path: Optional[str], only: Optional[str] = None,
          nni_family_path: Optional[str] = None) -> int:
    from .io import write_json
    nni, family = _read_peer(nni_path, "spos_cpu.py"), _read_peer(nni_family_path, "family_cpu.py")
    res = run(quick=quick, progress=sys.stderr.isatty(), nni=nni, only=only, nni_family=family)
    print(format_table(res))
    if json_path:
        write_json(Path(json_path), res)
    return 0 if "eval" not in res or res["eval"]["scores_identical"] else 1
