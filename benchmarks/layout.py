"""channels_last against contiguous memory on the CPU: every space's training step in both layouts.

For each space (the shapes of the other benchmarks: SPOS ShuffleNet at 32 and 224 px, the DARTS
search network at the NNI peer's setting, ENAS macro, ProxylessNAS and FBNet at 32 px) one
process builds the supernet twice from the same seed, one copy and its inputs in channels_last,
and times interleaved rounds of four forms: the strategy's training step (what
``supernet.train.fit`` runs: the strategy's decisions, forward and backward, then the update) in
each layout, and the step of one fixed subnet (a random path of the same supernet) in each. The
ratios are per round, so the machine's drift falls on both layouts alike.

The decision each space records (``cpu_channels_last`` in ``supernet.spaces``) comes from these
rows: channels_last where the strategy's step is faster in it.
"""
from __future__ import annotations

import copy
import random

import torch

from supernet.arch import SearchSpace, fix
from supernet.spaces import create
from supernet.strategies import DARTS, ENAS, SPOS, FBNet, Proxyless
from supernet.train.optim import step_on_path

from .common import Table, rounds, sgd, step_context, summary, train_step

CL = torch.channels_last
# name -> (space, input size, batch, classes, space options, strategy)
DIGITS = {"in_channels": 1, "width_mult": 0.5, "stage_repeats": [1, 1, 2, 1], "channel_search": True}  # the demo's
CASES = {
    "spos shufflenet-cifar@8/b64 (digits demo)": ("shufflenet-cifar", 8, 64, 10, DIGITS, SPOS),
    "spos resnet-digits@8/b64": ("resnet-digits", 8, 64, 10, {"in_channels": 1, "channel_search": True}, SPOS),
    "spos shufflenet-cifar@32/b64": ("shufflenet-cifar", 32, 64, 10, {}, SPOS),
    "spos shufflenet@224/b8": ("shufflenet", 224, 8, 1000, {}, SPOS),
    "darts darts@32/b16": ("darts", 32, 16, 10, {}, DARTS),
    "enas enas-macro@32/b16": ("enas-macro", 32, 16, 10, {}, ENAS),
    "proxyless proxyless-small@32/b16": ("proxyless-small", 32, 16, 10, {"width_mult": 0.5}, Proxyless),
    "fbnet fbnet-small@32/b16": ("fbnet-small", 32, 16, 10, {"width_mult": 0.5}, FBNet),
}


def _strategy(cls, space: SearchSpace, seed: int):
    """The strategy with its defaults; the hardware-aware ones without their latency loss (it needs
    a table, and it is a few table lookups per step)."""
    if cls in (Proxyless, FBNet):
        return cls(space, cls.Config(latency_loss=None), seed=seed)
    return cls(space, seed=seed)


def bench_case(name: str, seconds: float, min_rounds: int, seed: int = 0, progress: bool = True) -> dict:
    space_name, size, batch, classes, options, strategy_cls = CASES[name]
    gen = torch.Generator().manual_seed(seed)
    x, xv = (torch.randn(batch, options.get("in_channels", 3), size, size, generator=gen) for _ in range(2))
    y, yv = (torch.randint(classes, (batch,), generator=gen) for _ in range(2))
    torch.manual_seed(seed)
    base = create(space_name, input_size=size, num_classes=classes, **options).train()
    arch = SearchSpace(base).sample(random.Random(seed))
    forms = {}
    for layout, fmt in (("contiguous", torch.contiguous_format), ("channels_last", CL)):
        net = copy.deepcopy(base).to(memory_format=fmt)
        xs = [t.contiguous(memory_format=fmt) for t in (x, xv)]
        space = SearchSpace(net)
        strategy = _strategy(strategy_cls, space, seed)
        strategy.setup(torch.device("cpu"))
        opt = sgd(net)
        ctx = step_context(net, opt, held_out=lambda i, xs=xs: (xs[1], yv))
        fixed = fix(net, arch).train().to(memory_format=fmt)
        fixed_opt = sgd(fixed)
        forms[f"{layout}"] = lambda r, s=strategy, c=ctx, o=opt, v=xs[0]: _strategy_step(s, r, c, o, v, y)
        forms[f"fixed {layout}"] = lambda r, f=fixed, o=fixed_opt, v=xs[0]: train_step(f, o, v, y)
    for f in forms.values():  # warm-up: oneDNN primitives, optimizer state
        f(0)
    times = rounds(forms, seconds, min_rounds, seed, f"layout {name}", progress)

    def ratio(a, b):
        return summary([p / q for p, q in zip(times[a], times[b])])
    return {"setting": {"space": space_name, "input_size": size, "batch": batch, "classes": classes, **options,
                        "strategy": strategy_cls.__name__},
            "ms": {k: summary([v * 1e3 for v in vs]) for k, vs in times.items()},
            "channels_last_over_contiguous": ratio("channels_last", "contiguous"),
            "fixed_channels_last_over_contiguous": ratio("fixed channels_last", "fixed contiguous"),
            "supernet_over_fixed_contiguous": ratio("contiguous", "fixed contiguous"),
            "supernet_over_fixed_channels_last": ratio("channels_last", "fixed channels_last")}


def _strategy_step(strategy, r: int, ctx, opt, x, y) -> None:
    """The step ``supernet.train.fit`` takes (ENAS: a shared-weight step of its first phase)."""
    strategy.train_step(r % strategy.config.train_steps if isinstance(strategy, ENAS) else r, x, y, ctx)
    if strategy.path_only:
        step_on_path(opt)
    else:
        opt.step()
        opt.zero_grad(set_to_none=True)


def bench(seconds: float, min_rounds: int, progress: bool = True) -> dict:
    return {name: bench_case(name, seconds, min_rounds, progress=progress) for name in CASES}


def rows(res: dict, table: Table) -> None:
    for name, r in res.items():
        table.row(f"layout {name}: step channels_last / contiguous", r["channels_last_over_contiguous"])
        table.row(f"layout {name}: fixed subnet channels_last / contiguous", r["fixed_channels_last_over_contiguous"])
        table.row(f"layout {name}: step / fixed subnet, both channels_last", r["supernet_over_fixed_channels_last"])
        table.row(f"layout {name}: step contiguous (ms)", r["ms"]["contiguous"], "{:.1f}")
