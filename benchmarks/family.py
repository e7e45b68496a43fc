"""The differentiable and RL strategies' figures (DARTS, ENAS), measured as ratios in one process.

- **darts step**: one DARTS search step (an α step on a held-out batch, then a weight step with
  grad clip 5 and the SGD update) through the ``darts`` strategy and ``StepContext``, against the
  same arithmetic written out by hand as ``model_search.py`` does: the same op modules, each edge
  the softmax-weighted sum of its ops, each node the sum of its edges, no choice machinery. The
  rounds interleave first order, the hand-written step and second order, so the ratios are per
  round. The two forwards are checked to compute the same loss first.
- **darts memory**: the peak of the tensors a first-order search step allocates plus the resident
  weights and optimizer state (``common.peak_step_bytes``), against the fixed DARTS-V2 network's
  step; and the growth of the process's peak RSS over two first-order steps (NNI's figure), only
  comparable when the DARTS rows run first in a fresh process (as ``python -m benchmarks`` runs them).
- **enas step**: one shared-weight phase under ``enas`` against the fixed subnets of the same
  architectures, and a controller step (the whole step, and the controller alone).

The DARTS setting is the NNI peer's (``family_cpu.py``): the search network at C=16 with 8 cells,
3x32x32 inputs, 10 classes, batch 16, SGD with momentum; every form (the fixed DARTS-V2 network's
too) in the memory layout training uses (``train.channels_last``, on by default).
"""
from __future__ import annotations

import time
from typing import Optional

import torch
import torch.nn.functional as F

from supernet.arch import SearchSpace, fix
from supernet.arch.genotypes import DARTS_V2, genotype_arch
from supernet.nn.layers import Zero
from supernet.runtime.device import memory_format
from supernet.runtime.progress import progress_bar
from supernet.spaces import create
from supernet.strategies import DARTS, ENAS, StepContext
from supernet.train.optim import step_on_path

from .common import (Table, check_same_function, peak_step_bytes, peer_rows, rounds, sgd, step_context, summary,
                     train_step)

DARTS_SETTING = dict(size=32, batch=16, classes=10, options=dict(channels=16, layers=8), grad_clip=5.0)
DARTS_FORM = dict(channels_last=True,  # as train.channels_last trains
                  lean_saves=True)     # strategy.lean_saves, on by default


def plain_forward(net, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The search network's forward written out as ``model_search.py`` does, on ``net``'s modules."""
    s0 = s1 = net.stem(x)
    for cell in net.cells:
        states = [cell.pre0(s0), cell.pre1(s1)]
        for node in cell.nodes:
            out = None
            for j, edge in enumerate(node.edges):
                w = weights[edge.label]
                for k in range(len(edge)):
                    if isinstance(edge[k], Zero):  # 'none' adds 0 (the supernet skips it too)
                        continue
                    y = w[k] * edge[k](states[j])
                    out = y if out is None else out + y
            states.append(out)
        s0, s1 = s1, torch.cat(states[2:], dim=1)
    return net.classifier(net.pool(s1).flatten(1))


class PlainDarts:
    """The first-order DARTS step by hand: α by Adam on the held-out batch, then the weights."""

    def __init__(self, net, labels: list[str], alpha: list[torch.Tensor], optimizer, clip: float):
        self.net, self.labels, self.optimizer, self.clip = net, labels, optimizer, clip
        self.alpha = [torch.nn.Parameter(a.detach().clone()) for a in alpha]
        self.arch_optimizer = torch.optim.Adam(self.alpha, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        self.params = list(net.parameters())

    def weights(self, detach: bool = False) -> dict:
        return {l: (a.detach() if detach else a).softmax(-1) for l, a in zip(self.labels, self.alpha)}

    def step(self, x, y, xv, yv) -> torch.Tensor:
        loss = F.cross_entropy(plain_forward(self.net, xv, self.weights()), yv)
        for a, g in zip(self.alpha, torch.autograd.grad(loss, self.alpha)):
            a.grad = g
        self.arch_optimizer.step()
        self.arch_optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(plain_forward(self.net, x, self.weights(detach=True)), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def _ours(strategy: DARTS, ctx: StepContext, clip: float):
    """The step ``supernet.train.fit`` takes under ``darts``: the strategy's step, clip, update."""
    params = list(ctx.net.parameters())

    def step(i, x, y):
        loss, _, _ = strategy.train_step(i, x, y, ctx)
        torch.nn.utils.clip_grad_norm_(params, clip)
        ctx.optimizer.step()
        ctx.optimizer.zero_grad(set_to_none=True)
        return loss
    return step


def _rss_kb(field: str) -> Optional[int]:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def bench_darts(seconds: float, min_rounds: int, seed: int = 0, progress: bool = True,
                setting: Optional[dict] = None) -> dict:
    """Interleaved rounds of our first-order step, the hand-written one and our second-order step."""
    s = {**DARTS_FORM, **DARTS_SETTING, **(setting or {})}
    fmt = memory_format(s["channels_last"])
    torch.manual_seed(seed)
    net = create("darts", input_size=s["size"], num_classes=s["classes"], **s["options"]).train().to(memory_format=fmt)
    space = SearchSpace(net)
    gen = torch.Generator().manual_seed(seed)
    batch = lambda: (torch.randn(s["batch"], 3, s["size"], s["size"], generator=gen).to(memory_format=fmt),  # noqa: E731
                     torch.randint(s["classes"], (s["batch"],), generator=gen))
    (x, y), (xv, yv) = batch(), batch()
    opt = sgd(net, lr=0.025, weight_decay=3e-4)  # DARTS' weight optimizer
    ctx = step_context(net, opt, held_out=lambda i: (xv, yv))
    first, second = (DARTS(space, DARTS.Config(unrolled=u, lean_saves=s["lean_saves"]), seed=seed) for u in (False, True))
    for st in (first, second):
        st.setup(torch.device("cpu"))
    plain = PlainDarts(net, first.learned, first.alpha, opt, s["grad_clip"])

    # The same function: our supernet under α's softmax and the hand-written forward.
    with torch.no_grad():
        first.mix(detach=True)
        net.eval()
        same = float((net(x) - plain_forward(net, x, plain.weights(detach=True))).abs().max())
        net.train()
    if same > 1e-4:
        raise AssertionError(f"the hand-written DARTS forward differs from the supernet's by {same:.3g}")

    forms = {"ours": _ours(first, ctx, s["grad_clip"]), "plain": lambda i, x_, y_: plain.step(x_, y_, xv, yv),
             "unrolled": _ours(second, ctx, s["grad_clip"])}
    # Warm-up (oneDNN primitives, Adam's state), and NNI's memory figure: the growth of the peak RSS
    # over two of our first-order steps, before any other form has run.
    rss0 = _rss_kb("VmRSS") if _reset_peak_rss() else None
    forms["ours"](0, x, y)
    forms["ours"](0, x, y)
    rss_peak = _rss_kb("VmHWM") if rss0 is not None else None
    forms["plain"](0, x, y)
    times = rounds({k: lambda r, f=f: f(r + 1, x, y) for k, f in forms.items()}, seconds, min_rounds, seed,
                   "darts step rounds", progress)
    ratio = [a / b for a, b in zip(times["ours"], times["plain"])]
    ratio2 = [a / b for a, b in zip(times["unrolled"], times["ours"])]

    def one_step(model, optimizer, x_, y_):
        forms["ours"](0, x_, y_)
    search_mem = peak_step_bytes(one_step, net, opt, x, y)
    fixed = fix(net, genotype_arch(space, DARTS_V2), weights="init").train().to(memory_format=fmt)
    fixed_mem = peak_step_bytes(train_step, fixed, sgd(fixed, lr=0.025, weight_decay=3e-4), x, y)
    return {"setting": {**s, "params": sum(p.numel() for p in net.parameters()), "recompute": first.config.recompute},
            "ms": {k: summary([v * 1e3 for v in vs]) for k, vs in times.items()},
            "ratio_over_plain": summary(ratio), "unrolled_over_first": summary(ratio2),
            "memory": {"search_step": search_mem, "fixed_darts_v2": fixed_mem,
                       "rss_growth_bytes": None if rss_peak is None else (rss_peak - rss0) * 1024}}


def nni_darts(raw: dict) -> dict:
    """NNI 3.0's DARTS figures from ``family_cpu.py --json FILE``: its step, its fixed DARTS-V2 step
    and the growth of peak RSS during training (the table's rows for DARTS@darts and fixed@darts)."""
    rows = peer_rows(raw)
    step, fixed = rows[("DARTS@darts", "DARTS")], rows[("fixed@darts", "fixed (plain loop)")]
    return {"step_ms": step["median_ms"], "n": step["n"], "ratio_to_fixed": step["ratio_to_fixed"],
            "rss_growth_mb": step["growth_mb"], "fixed_ms": fixed["median_ms"], "fixed_rss_growth_mb": fixed["growth_mb"],
            "versions": raw.get("meta", {}).get("versions")}


# --- ENAS ---------------------------------------------------------------------------------------------
# --- ENAS ---------------------------------------------------------------------------------------------
# The official macro search network (12 layers, 36 filters, 32x32), at the NNI peer's batch of 16.
ENAS_SETTING = dict(space="enas-macro", size=32, batch=16, classes=10, options=dict(layers=12, channels=36),
                    train_steps=10, aggregate=20)


def bench_enas(seconds: float, min_rounds: int, seed: int = 0, progress: bool = True,
               setting: Optional[dict] = None) -> dict:
    """Rounds of one shared-weight phase under ``enas`` (the phase's batched draw included) against
    the fixed subnets of the same architectures, same batch, in a rotated order; then controller
    steps: the whole step (``ctrl_aggregate`` samples, their rewards on held-out batches and the
    update) and the controller alone (the samples, the REINFORCE loss's backward and Adam)."""
    s = {**ENAS_SETTING, **(setting or {})}
    torch.manual_seed(seed)
    net = create(s["space"], input_size=s["size"], num_classes=s["classes"], **s["options"]).train()
    space = SearchSpace(net)
    gen = torch.Generator().manual_seed(seed)
    batch = lambda: (torch.randn(s["batch"], 3, s["size"], s["size"], generator=gen),  # noqa: E731
                     torch.randint(s["classes"], (s["batch"],), generator=gen))
    (x, y), (xv, yv) = batch(), batch()
    opt = sgd(net, lr=0.05, weight_decay=2.5e-4)
    ctx = step_context(net, opt, held_out=lambda i: (xv, yv))
    cpu = torch.device("cpu")
    shared = ENAS(space, ENAS.Config(train_steps=s["train_steps"]), seed=seed)
    shared.setup(cpu)
    shared.controller_phase = lambda *args: None  # timed below, on its own
    k = s["train_steps"]
    first = shared.phase_archs(0)[0]
    check_same_function(net, space, first, fix(net, first), x)

    times = {"ours": [], "fixed": []}
    ratio = []
    bar = progress_bar(desc="enas phase rounds", unit="round", disable=not progress, leave=False)
    t_end = time.perf_counter() + seconds
    r = 0
    while r <= min_rounds or time.perf_counter() < t_end:  # round 0 warms up
        archs = shared.phase_archs(r)
        fixed = [fix(net, a) for a in archs]  # built outside the timing
        opts = [sgd(f, lr=0.05, weight_decay=2.5e-4) for f in fixed]
        shared._phase = (None, [])  # the timed phase draws its architectures again (the same ones)

        def ours():
            for t in range(r * k, (r + 1) * k):
                shared.train_step(t, x, y, ctx)
                step_on_path(opt)

        def plain():
            for f, o in zip(fixed, opts):
                train_step(f, o, x, y)

        got = {}
        for name, fn in ([("ours", ours), ("fixed", plain)] if r % 2 == 0 else [("fixed", plain), ("ours", ours)]):
            t0 = time.perf_counter()
            fn()
            got[name] = (time.perf_counter() - t0) / k
        if r > 0:
            for name in got:
                times[name].append(got[name])
            ratio.append(got["ours"] / got["fixed"])
            bar.update(1)
        r += 1
    bar.close()

    # Controller steps: the whole step through the strategy, and the controller's own share.
    ctrl = ENAS(space, ENAS.Config(ctrl_steps=1, ctrl_aggregate=s["aggregate"]), seed=seed)
    ctrl.setup(cpu)
    whole, alone = [], []
    for i in range(max(3, min_rounds // 2) + 1):
        t0 = time.perf_counter()
        ctrl.controller_phase(i + 1, i + 1, ctx)
        t1 = time.perf_counter()
        sample = ctrl.controller.sample(s["aggregate"], torch.Generator().manual_seed(i))
        loss = (sample.nll * 0.1 + 0.8 * sample.skip_penalty).mean()
        ctrl.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ctrl.optimizer.step()
        t2 = time.perf_counter()
        if i:  # the first of each warms up
            whole.append(t1 - t0)
            alone.append(t2 - t1)
    return {"setting": {**s, "params": sum(p.numel() for p in net.parameters()), "labels": len(space.labels)},
            "ms": {k_: summary([v * 1e3 for v in vs]) for k_, vs in times.items()},
            "ratio_over_fixed": summary(ratio), "controller_step_ms": summary([v * 1e3 for v in whole]),
            "controller_alone_ms": summary([v * 1e3 for v in alone])}


def darts_rows(d: dict, table: Table) -> None:
    row = table.row
    s = d["setting"]
    where = f"C={s['options']['channels']}, {s['options']['layers']} cells, {s['size']}px, b{s['batch']}"
    row(f"darts step ({where}): ours 1st order / hand-written", d["ratio_over_plain"])
    row("darts step: ours 2nd order / ours 1st order", d["unrolled_over_first"])
    for k, what in (("ours", "ours 1st order"), ("plain", "hand-written 1st order"), ("unrolled", "ours 2nd order")):
        row(f"darts step: {what} (ms)", d["ms"][k], "{:.0f}")
    m = d["memory"]
    table.memory("memory darts: search step / fixed DARTS-V2 step peak (MB)", m["search_step"]["peak_bytes"],
                 m["fixed_darts_v2"]["peak_bytes"])
    if m.get("rss_growth_bytes") is not None:
        table.text(f"| {'memory darts: peak RSS growth over 2 first-order steps (MB)':<66} | "
                   f"{m['rss_growth_bytes'] / 2**20:>10.0f} | {'':>19} | {'':>19} | {1:>3} |")
    if "nni" in d:
        n = d["nni"]
        table.text(f"NNI 3.0 DARTS (family_cpu.py): {n['step_ms']:.0f} ms/step = {n['step_ms'] / d['ms']['ours']['median']:.1f}x "
                   f"ours 1st order; {n['ratio_to_fixed']:.1f}x its fixed DARTS-V2 step; peak RSS growth "
                   f"{n['rss_growth_mb']:.0f} MB")


def enas_rows(d: dict, table: Table) -> None:
    row = table.row
    s = d["setting"]
    where = f"{s['options']['layers']}x{s['options']['channels']}, {s['size']}px, b{s['batch']}"
    row(f"enas step (macro {where}): ours / fixed subnets sampled", d["ratio_over_fixed"])
    row("enas shared-weight step: ours (ms)", d["ms"]["ours"], "{:.1f}")
    row("enas shared-weight step: fixed subnet (ms)", d["ms"]["fixed"], "{:.1f}")
    row(f"enas controller step: {s['aggregate']} samples + rewards + update (ms)", d["controller_step_ms"], "{:.0f}")
    row(f"enas controller step: controller alone ({s['aggregate']} samples, bwd, Adam; ms)", d["controller_alone_ms"],
        "{:.1f}")
