"""The hardware-aware strategies' figures (ProxylessNAS, FBNet), measured as ratios in one process.

- **proxyless step**: the ``proxyless`` strategy's weight step (one path drawn from p, SGD on that
  path) and its architecture step in both gradient modes (``full_v2`` and ``two`` gates on a
  held-out batch, Adam on α), all in the same rounds, against one SGD step of the fixed subnet of
  the same path, the argmax path (α is set so that p puts all but 1e-9 of its mass there, so the
  drawn path is the argmax one). The schedule's average is one α step per ``arch_every`` (5)
  weight steps: (5·weight + arch) / (5·fixed), per round; NNI's step (an α update at every
  weight step) is (weight + arch) / fixed.
- **fbnet step**: the θ step and the weight step (every candidate of every layer mixed by a
  Gumbel sample) against the fixed argmax subnet's step; the schedule is both every step.
- **FLOP floor of full_v2**: the arch step runs the path forward, its backward to the activations
  only (the weights are frozen) and every other candidate's forward on the saved block inputs. With
  F the fixed subnet's forward FLOPs, O the other candidates' (``FlopCounterMode``) and the usual
  training step = 3F (the backward computes input and weight gradients, a forward's FLOPs each), an
  exact full_v2 arch step costs (2F + O) / 3F fixed steps and the schedule (3kF + 2F + O) / 3kF.
  This is what any implementation that re-runs the candidates must pay if FLOPs cost the same
  in every kernel; the measured ratios sit beside it.
- **memory**: the peak of what a step allocates (activations, gradients, temporaries), and that
  plus the resident weights and optimizer state (``common.peak_step_bytes``), of the larger of the
  two step kinds, against the fixed argmax subnet and the largest fixed subnet (most FLOPs) of the
  space, and against a first-order DARTS step (every candidate mixed by softmax(α)) on the same
  space. The resident part is the whole supernet's weights, which every weight-sharing method holds.

The setting is the NNI peer's Proxyless job (``family_cpu.py``): the ImageNet
space at width 0.5, 3x32x32 inputs, 10 classes, batch 16, SGD with momentum. No latency term is
timed (one small contraction per step). With ``--nni-family FILE`` the peer's Proxyless and
GumbelDARTS rows on that space are printed beside ours (``nni_hardware``).
"""
from __future__ import annotations

import random
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from supernet.arch import SearchSpace, fix
from supernet.cost import CostModel
from supernet.nn.choices import LayerChoice
from supernet.spaces import create
from supernet.strategies import DARTS, FBNet, Proxyless
from supernet.strategies.proxyless import MODES
from supernet.train.optim import step_on_path

from .common import Table, peak_step_bytes, peer_rows, rounds, sgd, step_context, summary, train_step

HARDWARE_SETTING = dict(size=32, batch=16, classes=10, width_mult=0.5, arch_every=5, seed=0, options={})


def _setup(space_name: str, s: dict):
    torch.manual_seed(s["seed"])
    net = create(space_name, input_size=s["size"], num_classes=s["classes"], width_mult=s["width_mult"],
                 **s["options"]).train()
    space = SearchSpace(net)
    gen = torch.Generator().manual_seed(s["seed"])
    batch = lambda: (torch.randn(s["batch"], 3, s["size"], s["size"], generator=gen),  # noqa: E731
                     torch.randint(s["classes"], (s["batch"],), generator=gen))
    (x, y), (xv, yv) = batch(), batch()
    arch = space.sample(random.Random(s["seed"]))  # the argmax path
    fixed = fix(net, arch).train()
    largest = fix(net, CostModel(net).extreme_arch("flops", largest=True)).train()
    return net, space, (x, y), (xv, yv), arch, fixed, sgd(fixed), largest, sgd(net)


def _pin(params: list[torch.Tensor], space: SearchSpace, labels: list[str], arch: dict) -> None:
    """Architecture parameters whose argmax is ``arch`` with all but ~1e-9 of the mass on it."""
    with torch.no_grad():
        for label, a in zip(labels, params):
            a.zero_()
            a[arch[label]] = 25.0


def _memory(strategy_steps: dict, net, opt, x, y, fixed, largest) -> dict:
    out = {k: peak_step_bytes(lambda m, o, x_, y_, f=f: f(x_, y_), net, opt, x, y) for k, f in strategy_steps.items()}
    out["fixed_argmax"] = peak_step_bytes(train_step, fixed, sgd(fixed), x, y)
    out["fixed_largest"] = peak_step_bytes(train_step, largest, sgd(largest), x, y)
    return out


def full_v2_flops(net, space: SearchSpace, arch: dict, x: torch.Tensor, k: int) -> dict:
    """The FLOP model of a full_v2 schedule (module docstring): F, O and the implied ratios."""
    def flops(f) -> int:
        with FlopCounterMode(display=False) as c:
            f()
        return c.get_total_flops()
    inputs = []
    hooks = [m.register_forward_hook(lambda m, args, y: inputs.append((m, args)))
             for m in net.modules() if isinstance(m, LayerChoice)]
    space.activate(arch, check=False)
    try:
        with torch.no_grad():
            fwd = flops(lambda: net(x))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        others = sum(flops(lambda: op(*args)) for m, args in inputs for i, op in enumerate(m.candidates.values()) if i != m.active)
    arch_step = (2 * fwd + others) / (3 * fwd)
    return {"forward_flops": fwd, "other_candidates_flops": others, "arch_over_fixed": arch_step,
            "average_over_fixed": 1 + arch_step / k}


def _darts_memory(net, space, x, y, xv, yv) -> dict:
    darts = DARTS(space)
    darts.setup(torch.device("cpu"))
    opt = sgd(net, lr=0.025, weight_decay=3e-4)
    ctx = step_context(net, opt, held_out=lambda i: (xv, yv))

    def step(m, o, x_, y_):
        darts.train_step(1, x_, y_, ctx)
        o.step()
        o.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    mem = peak_step_bytes(step, net, opt, x, y)
    return {**mem, "step_s": time.perf_counter() - t0}


def bench_proxyless(seconds: float, min_rounds: int, progress: bool = True, setting: dict | None = None) -> dict:
    s = {**HARDWARE_SETTING, **(setting or {})}
    net, space, (x, y), (xv, yv), arch, fixed, fixed_opt, largest, opt = _setup("proxyless", s)
    k = s["arch_every"]
    strategies = {}
    for mode in MODES:  # both gradient modes' arch steps, in the same rounds
        st = strategies[mode] = Proxyless(space, Proxyless.Config(latency_loss=None, arch_every=k, mode=mode),
                                          seed=s["seed"])
        st.setup(torch.device("cpu"))
        _pin(st.alpha, space, st.labels, arch)
    strategy = strategies["full_v2"]
    ctx = step_context(net, opt, held_out=lambda i: (xv, yv))
    assert strategy.sample_path(1) == arch and strategy.draw(0)[1] == {l: [v] for l, v in arch.items()}

    def weight(r):  # a step with no α update: (k*r + 1) % k != 0
        strategy.train_step(k * r + 1, x, y, ctx)
        step_on_path(opt)

    def arch_step(mode):
        def step(r):
            st = strategies[mode]
            st.arch_step(k * r, ctx)
            _pin(st.alpha, space, st.labels, arch)  # Adam moved α a little: keep the same paths
        return step

    forms = {"fixed": lambda r: train_step(fixed, fixed_opt, x, y), "weight": weight,
             **{f"arch_{mode}": arch_step(mode) for mode in MODES}}
    for f in forms.values():  # warm-up: oneDNN primitives, Adam's state
        f(0)
    t = rounds(forms, seconds, min_rounds, s["seed"], "proxyless step rounds", progress)
    modes = {}
    for mode in MODES:
        a = t[f"arch_{mode}"]
        modes[mode] = {"arch_over_fixed": summary([a_ / f for a_, f in zip(a, t["fixed"])]),
                       # the schedule: k weight steps and one α step per k fixed-subnet steps
                       "average_over_fixed": summary([(k * w + a_) / (k * f) for w, a_, f in zip(t["weight"], a, t["fixed"])]),
                       # NNI's step (an α update at every weight step): one of each per fixed step
                       "both_over_fixed": summary([(w + a_) / f for w, a_, f in zip(t["weight"], a, t["fixed"])])}
    memory = _memory({"weight_step": lambda x_, y_: weight(0), "arch_step": lambda x_, y_: arch_step("full_v2")(0)},
                     net, opt, x, y, fixed, largest)
    memory["darts_step"] = _darts_memory(net, space, x, y, xv, yv)
    modes["full_v2"]["flop_model"] = full_v2_flops(net, space, arch, x, k)
    return {"setting": {**s, "space": "proxyless", "params": sum(p.numel() for p in net.parameters())},
            "ms": {k_: summary([v * 1e3 for v in vs]) for k_, vs in t.items()},
            "weight_over_fixed": summary([w / f for w, f in zip(t["weight"], t["fixed"])]),
            **modes["full_v2"], "modes": modes, "memory": memory}


def bench_fbnet(seconds: float, min_rounds: int, progress: bool = True, setting: dict | None = None) -> dict:
    s = {**HARDWARE_SETTING, **(setting or {})}
    net, space, (x, y), (xv, yv), arch, fixed, fixed_opt, largest, opt = _setup("fbnet", s)
    strategy = FBNet(space, FBNet.Config(latency_loss=None), seed=s["seed"])
    strategy.setup(torch.device("cpu"))
    _pin(strategy.theta, space, strategy.labels, arch)
    assert strategy.final_arch() == arch
    ctx = step_context(net, opt, held_out=lambda i: (xv, yv))

    def weight(r):
        strategy.space.set_weights(strategy.gumbel(r, 1, detach=True))
        ctx.loss(x, y)[0].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def theta(r):
        grads = strategy.arch_grads(r, ctx)
        for t_, g in zip(strategy.theta, grads):
            t_.grad = g
        strategy.optimizer.step()
        strategy.optimizer.zero_grad(set_to_none=True)

    forms = {"fixed": lambda r: train_step(fixed, fixed_opt, x, y), "weight": weight, "arch": theta}
    for f in forms.values():
        f(0)
    t = rounds(forms, seconds, min_rounds, s["seed"], "fbnet step rounds", progress)
    memory = _memory({"weight_step": lambda x_, y_: weight(0), "arch_step": lambda x_, y_: theta(0)},
                     net, opt, x, y, fixed, largest)
    return {"setting": {**s, "space": "fbnet", "params": sum(p.numel() for p in net.parameters())},
            "ms": {k_: summary([v * 1e3 for v in vs]) for k_, vs in t.items()},
            "weight_over_fixed": summary([w / f for w, f in zip(t["weight"], t["fixed"])]),
            "arch_over_fixed": summary([a / f for a, f in zip(t["arch"], t["fixed"])]),
            "average_over_fixed": summary([(w + a) / f for w, a, f in zip(t["weight"], t["arch"], t["fixed"])]),
            "memory": memory}


def rows(name: str, d: dict, table: Table) -> None:
    row, memory_line, text = table.row, table.memory, table.text
    s = d["setting"]
    row(f"{name} ({s['space']} x{s['width_mult']}, {s['size']}px, b{s['batch']}): weight step / fixed argmax subnet",
        d["weight_over_fixed"])
    if name == "proxyless":
        every = f"1 arch step per {s['arch_every']} weight steps"
        for mode, m in d["modes"].items():
            row(f"{name} {mode}: arch step / fixed argmax subnet", m["arch_over_fixed"])
            row(f"{name} {mode}: schedule average ({every}) / fixed", m["average_over_fixed"])
            row(f"{name} {mode}: weight + arch step (NNI's step) / fixed", m["both_over_fixed"])
            if "flop_model" in m:
                f = m["flop_model"]
                text(f"{name} {mode} FLOP model (fixed forward F = {f['forward_flops'] / 1e6:.1f} MFLOP, other "
                     f"candidates O = {f['other_candidates_flops'] / f['forward_flops']:.2f}F): arch step (2F + O) / 3F = "
                     f"{f['arch_over_fixed']:.2f}x, schedule average {f['average_over_fixed']:.2f}x")
    else:
        row(f"{name}: arch step / fixed argmax subnet", d["arch_over_fixed"])
        row(f"{name}: schedule average (a θ step every step) / fixed", d["average_over_fixed"])
    times = [("fixed", "fixed argmax subnet step"), ("weight", "weight step")]
    times += [(f"arch_{mode}", f"arch step {mode}") for mode in d.get("modes", ())] or [("arch", "arch step")]
    for k, what in times:
        row(f"{name}: {what} (ms)", d["ms"][k], "{:.0f}")
    m = d["memory"]
    for what, key in (("allocated in the step", "step_peak_bytes"), ("with weights + optimizer state", "peak_bytes")):
        search = max(m["weight_step"][key], m["arch_step"][key])
        memory_line(f"memory {name}, {what}: search step / largest fixed (MB)", search, m["fixed_largest"][key])
        memory_line(f"memory {name}, {what}: search step / fixed argmax (MB)", search, m["fixed_argmax"][key])
        if "darts_step" in m:
            memory_line(f"memory {name}, {what}: DARTS 1st order here / largest fixed (MB)", m["darts_step"][key],
                        m["fixed_largest"][key])
    if "nni" in d:
        n = d["nni"]
        if name == "proxyless":
            peer, what = "Proxyless", "an α update + a weight update"
            ours = ", ".join(f"{m['both_over_fixed']['median']:.2f}x ({mode})" for mode, m in d["modes"].items())
        else:
            peer, what = "GumbelDARTS", "a θ update + a weight update, every candidate mixed"
            ours = f"{d['average_over_fixed']['median']:.2f}x"
        text(f"NNI 3.0 {peer} (family_cpu.py, its ProxylessNAS x0.5 space, 32px, b16): {n['step_ms']:.0f} ms/step = "
             f"{n['ratio_to_fixed']:.1f}x its fixed net ({what}); ours, the same step: {ours}")


def nni_hardware(raw: dict) -> dict:
    """NNI 3.0's Proxyless and GumbelDARTS rows on its ProxylessNAS space (``family_cpu.py --json``)."""
    rows = peer_rows(raw)
    out = {}
    for name, peer in (("proxyless", "Proxyless"), ("fbnet", "GumbelDARTS")):
        r = rows.get((f"{peer}@proxylessnas", peer))
        if r is not None:
            out[name] = {"step_ms": r["median_ms"], "n": r["n"], "ratio_to_fixed": r["ratio_to_fixed"],
                         "ratio_to_fixed_interleaved": r.get("ratio_to_fixed_interleaved"),
                         "growth_mb": r.get("growth_mb"), "versions": raw.get("meta", {}).get("versions")}
    return out


