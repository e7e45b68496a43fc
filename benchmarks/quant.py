"""The mixed-precision figures: what quantization-aware (QAT) supernet training costs per step.

- **QAT supernet / fixed subnet**: one SGD step (forward, backward, update) of the mixed-precision
  supernet (``mixed_precision(..., share="block")``: every conv but the stem and the classifier
  fake-quantized at its block's searched weight and activation bits) on a fresh random path, and
  pinned to one path, against the stand-alone fixed subnet of that path, ``fix(supernet, arch)``:
  the same blocks, widths and bits, the same weights and step sizes. The goal is at most 1.05:
  the choice machinery (bit choices included) should cost next to nothing over the network it
  trains.
- **fake-quantization overhead**: the fixed quantized subnet's step against the same subnet in
  float (``supernet.export.dequantized``: each ``Quantized`` replaced by the layer it wraps), on
  the same paths. This is the price of QAT itself, which no supernet can remove.

Every round runs the six forms in a rotated order, and the ratios are per round, as in
``spos.bench_step``, whose supernet step (``_supernet_step``: SPOS draws and activates the path,
the optimizer steps the path's parameters) is reused here. Before timing, every candidate's step
sizes have started at every bit width, as in the middle of training.
"""
from __future__ import annotations

import itertools
import random

import torch

from supernet.arch import SearchSpace, fix
from supernet.export import dequantized
from supernet.nn import ChannelChoice
from supernet.quant import bit_labels, mixed_precision
from supernet.spaces import create
from supernet.strategies import SPOS, PathSampler

from .common import Table, check_same_function, sgd, step_context, step_rounds, summary, train_step
from .spos import _Pinned, _supernet_step

# The digits mixed-precision space (configs/mixed-precision-digits.yaml's model) and its 32 px twin.
OPTIONS = dict(width_mult=0.5, stage_repeats=[1, 1, 2, 1], channel_search=True, num_classes=10)
QUANT = dict(weight_bits=[2, 3, 4, 8], act_bits=[2, 3, 4, 8], share="block")
# name -> (space, input size, input channels, batch, other space options)
SHAPES = {
    "digits@8/b64": ("shufflenet-cifar", 8, 1, 64, OPTIONS),
    "cifar@32/b64": ("shufflenet-cifar", 32, 3, 64, OPTIONS),
}


def start_every_step(space: SearchSpace, ctx, x, y) -> None:
    """Supernet steps on paths that together train every candidate at every bit width, so that no
    timed step pays for LSQ's first-batch initialisation of a step size. A width decides no step
    size (a sliced layer quantizes its whole kernel), so these paths run at the smallest widths."""
    bits = set(bit_labels(space))
    blocks = [l for l in space.labels if l not in bits and not isinstance(space.choice(l), ChannelChoice)]
    n_blocks = max((space.n_options(l) for l in blocks), default=1)
    n_bits = max(space.n_options(l) for l in bits)
    for t, (i, b) in enumerate(itertools.product(range(n_blocks), range(n_bits))):
        arch = {l: b % space.n_options(l) if l in bits else i % space.n_options(l) if l in blocks else 0
                for l in space.labels}
        _supernet_step(_Pinned(space, arch), t, ctx, x, y)


def bench_step(name: str, seconds: float, min_rounds: int, seed: int = 0, progress: bool = True) -> dict:
    """Rounds of the six forms until about ``seconds`` are spent (at least ``min_rounds``)."""
    space_name, size, channels, batch, options = SHAPES[name]
    torch.manual_seed(seed)
    # affine BN, as in spos.bench_step: the supernet and the fixed subnet do the same arithmetic
    model = create(space_name, input_size=size, in_channels=channels, **{**options, "affine": True}).train()
    mixed_precision(model, **QUANT)
    space = SearchSpace(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=gen)
    y = torch.randint(0, options["num_classes"], (batch,), generator=gen)
    opt = sgd(model)
    ctx = step_context(model, opt)
    start_every_step(space, ctx, x, y)
    sampler = PathSampler(space, seed)
    pinned = space.sample(random.Random(seed))
    fixed_pinned = fix(model, pinned)
    float_pinned = dequantized(fixed_pinned)
    opt_pinned, opt_float_pinned = sgd(fixed_pinned), sgd(float_pinned)
    strategy, pinned_strategy = SPOS(space, seed=seed), _Pinned(space, pinned)
    check_same_function(model, space, pinned, fixed_pinned, x)

    def make_forms(steps):
        fixed_random = [fix(model, sampler(t)) for t in steps]  # built outside the timing
        float_random = [dequantized(f) for f in fixed_random]
        opt_fixed, opt_float = [sgd(f) for f in fixed_random], [sgd(f) for f in float_random]

        def supernet(strategy):
            return lambda: [_supernet_step(strategy, t, ctx, x, y) for t in steps]  # drawing the path is timed

        def subnets(models, opts):
            return lambda: [train_step(m, o, x, y) for m, o in zip(models, opts)]

        n = len(steps)
        return [("random", supernet(strategy)), ("fixed_random", subnets(fixed_random, opt_fixed)),
                ("float_random", subnets(float_random, opt_float)), ("pinned", supernet(pinned_strategy)),
                ("fixed_pinned", subnets([fixed_pinned] * n, [opt_pinned] * n)),
                ("float_pinned", subnets([float_pinned] * n, [opt_float_pinned] * n))]

    times, k, _ = step_rounds(make_forms, seconds, min_rounds, "fixed_pinned", f"quant step {name}", progress)

    def ratio(a, b):
        return summary([p / q for p, q in zip(times[a], times[b])])
    setup = {"space": space_name, "input_size": size, "in_channels": channels, "batch": batch, **options, **QUANT,
             "labels": len(space.labels), "bit_labels": len(bit_labels(space))}
    return {"shape": name, "setup": setup,
            "steps_per_sample": k, "times_s": {f: summary(v) for f, v in times.items()},
            "ratio_pinned": ratio("pinned", "fixed_pinned"), "ratio_random": ratio("random", "fixed_random"),
            "fake_quant_pinned": ratio("fixed_pinned", "float_pinned"),
            "fake_quant_random": ratio("fixed_random", "float_random")}


def bench(seconds: float, min_rounds: int, progress: bool = True) -> dict:
    """``bench_step``'s figures for every shape."""
    return {name: bench_step(name, seconds, min_rounds, progress=progress) for name in SHAPES}


def rows(res: dict, table: Table) -> None:
    row = table.row
    for name, st in res.items():
        row(f"quant {name}: QAT supernet pinned / fixed subnet", st["ratio_pinned"])
        row(f"quant {name}: QAT supernet random path / fixed subnet", st["ratio_random"])
        row(f"quant {name}: fake-quant overhead, fixed / float (pinned)", st["fake_quant_pinned"])
        row(f"quant {name}: fake-quant overhead, fixed / float (random)", st["fake_quant_random"])
        row(f"quant {name}: fixed quantized subnet (ms)", st["times_s"]["fixed_pinned"], "{:.1f}", 1e3)
        row(f"quant {name}: fixed float subnet (ms)", st["times_s"]["float_pinned"], "{:.1f}", 1e3)
    if res:
        s = next(iter(res.values()))["setup"]
        table.text(f"quant: {s['space']} width {s['width_mult']}, stages {s['stage_repeats']}, channel search "
                   f"{'on' if s['channel_search'] else 'off'}, weight/act bits {s['weight_bits']}/{s['act_bits']} "
                   f"shared per {s['share']}; goal: QAT supernet / fixed subnet <= 1.05")
